# docker-driver: drives src/docker against a real engine for
# tests/integration/test-docker-api.sh; built as ${CMAKE_BINARY_DIR}/docker-driver.
add_executable(docker-driver ${CMAKE_CURRENT_LIST_DIR}/docker-driver.c)
target_link_libraries(docker-driver PRIVATE aiwm)
set_target_properties(docker-driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
