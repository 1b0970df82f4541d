# Fake libnvidia-ml.so.1 for tests/unit/test-gpu.c and bench/bench-gpu.c, in
# three ABI variants of the same source (tests/helpers/fake-nvml.c):
#   ${CMAKE_BINARY_DIR}/fake-nvml/libnvidia-ml.so.1          every entry point
#   ${CMAKE_BINARY_DIR}/fake-nvml-nov3/libnvidia-ml.so.1     no _v3 entry points
#   ${CMAKE_BINARY_DIR}/fake-nvml-legacy/libnvidia-ml.so.1   unversioned only, some missing
foreach(variant full nov3 legacy)
  set(tgt fake-nvml-${variant})
  add_library(${tgt} SHARED ${CMAKE_CURRENT_LIST_DIR}/fake-nvml.c)
  if(variant STREQUAL "full")
    set(dir ${CMAKE_BINARY_DIR}/fake-nvml)
  else()
    set(dir ${CMAKE_BINARY_DIR}/fake-nvml-${variant})
  endif()
  if(variant STREQUAL "nov3")
    target_compile_definitions(${tgt} PRIVATE FAKE_NVML_NO_V3=1)
  elseif(variant STREQUAL "legacy")
    target_compile_definitions(${tgt} PRIVATE FAKE_NVML_LEGACY=1)
  endif()
  set_target_properties(${tgt} PROPERTIES
    OUTPUT_NAME nvidia-ml
    SOVERSION 1
    NO_SONAME OFF
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${dir})
endforeach()

# test-gpu and bench-gpu load them at run time: build them first. The bench
# targets are defined after this file is included, hence the deferred call.
function(aiwm_fake_nvml_deps)
  foreach(t test-gpu bench-gpu)
    if(TARGET ${t})
      add_dependencies(${t} fake-nvml-full fake-nvml-nov3 fake-nvml-legacy)
    endif()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL aiwm_fake_nvml_deps)
