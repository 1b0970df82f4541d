#!/usr/bin/env bash
# Issue 5: the model cache against real peers. The dev controller sends the
# commands; tests/helpers/dl-server.py serves files (Range, faults, byte
# counts) and stands in for the Hugging Face Hub and its CDN; s3rver (npm,
# tests/tools-s3) is the S3 server, behind dl-server.py --mode s3proxy, which
# verifies every AWS SigV4 signature (s3rver itself does not) and makes the
# listing page after 2 keys.
#
# Checks: http download with sha256; progress events and their cadence;
# resume after a dropped connection and after kill -9 of the worker (the
# bytes already on disk are not served again: counted by the server);
# checksum mismatch (error, nothing placed); path traversal and symlink
# escapes (2001); S3 listing over several pages with SigV4; a wrong S3
# secret; Hugging Face public and private repositories, the
# huggingface_hub cache layout read back offline, the token never sent to
# the CDN; coalesced duplicate requests (one transfer); model.cache without
# network; model.list / model.delete; disk full (3003, staging kept) on a
# 2 MiB tmpfs when this machine lets us mount one.
. "$(dirname "$0")/lib.sh"

DLSRV="$AIWM_SRC/tests/helpers/dl-server.py"
S3DIR="$AIWM_SRC/tests/tools-s3"
NODE=$(node "$CTL_DIR/ctl.js" new-id)
TOKEN=$(mint "$NODE")
HF_TOKEN_PRIVATE=$(cat "$AIWM_SRC/tests/fixtures/hf/aiwm-test/private-model/auth")
S3_KEY=AKIAAIWMTEST
S3_SECRET='aiwm/test+secret'

command -v python3 >/dev/null || { echo "# skip: python3 missing"; exit 77; }

start_controller ctl --seed-node "$NODE"
CTL() { node "$CTL_DIR/ctl.js" "$@" --url "$CTL_URL" --admin-token "$ADMIN_TOKEN"; }

# wait_port FILE: waits for a port file, prints the port.
wait_port() {
        local i
        for i in $(seq 1 100); do
                [ -s "$1" ] && { cat "$1"; return 0; }
                sleep 0.1
        done
        return 1
}

# --- peers -----------------------------------------------------------------
mkdir -p "$T/www"
head -c 3000000 /dev/urandom >"$T/www/a.bin"
head -c 8000000 /dev/urandom >"$T/www/big.bin"
head -c 2500000 /dev/urandom >"$T/www/dup.bin"
head -c 3000000 /dev/urandom >"$T/www/full.bin"
sha() { sha256sum "$1" | cut -d' ' -f1; }
python3 "$DLSRV" --root "$T/www" --hub "$AIWM_SRC/tests/fixtures/hf" --cdn-host localhost \
        --port-file "$T/dl.port" >"$T/dl.log" 2>&1 &
PIDS+=($!)
DLP=$(wait_port "$T/dl.port") || { echo "dl-server did not start"; exit 1; }
DL="http://127.0.0.1:$DLP"
dlctl() { curl -sS -X "$1" "$DL/_ctl/$2" ${3:+--data "$3"}; }

S3OK=0
if [ -d "$S3DIR/node_modules/s3rver" ]; then
        node "$S3DIR/run-s3rver.js" --dir "$T/s3data" --port-file "$T/s3.port" --bucket models >"$T/s3rver.log" 2>&1 &
        PIDS+=($!)
        if S3P=$(wait_port "$T/s3.port"); then
                python3 "$DLSRV" --mode s3proxy --upstream "http://127.0.0.1:$S3P" --access-key "$S3_KEY" \
                        --secret-key "$S3_SECRET" --max-keys 2 --port-file "$T/s3proxy.port" >"$T/s3proxy.log" 2>&1 &
                PIDS+=($!)
                S3PP=$(wait_port "$T/s3proxy.port") && S3OK=1
        fi
else
        echo "# note: tests/tools-s3/node_modules missing (run npm ci there); S3 checks skipped"
fi
S3="http://127.0.0.1:${S3PP:-1}"

WENV=(CONTROLLER_WS_URL="ws://127.0.0.1:$CTL_PORT/ws/node" NODE_TOKEN="$TOKEN" RECONNECT_DELAY=200
      RECONNECT_DELAY_MAX=600 AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent HF_ENDPOINT="$DL"
      S3_ENDPOINT="$S3" S3_ACCESS_KEY="$S3_KEY" S3_SECRET_KEY="$S3_SECRET" MODEL_STALL_TIMEOUT=3
      MODEL_RETRY_BASE_MS=100)
MODELS="$T/w.models"
run_worker() { # log-name [extra env...]
        local name=$1; shift
        mkdir -p "$T/w.state" "$MODELS"
        env -i PATH="$PATH" HOME="$T" STATE_DIR="$T/w.state" MODEL_CACHE_DIR="$MODELS" PUBLIC_IP_URLS= \
                LOG_LEVEL=debug "${WENV[@]}" "$@" "$AIWM_BIN" >>"$T/$name.log" 2>&1 &
        WORKER_PID=$!
        PIDS+=("$WORKER_PID")
}
run_worker w
check "registered" wait_log "$T/w.log" "registered heartbeatInterval" 10

# cmd TYPE MODEL DATA [WAIT]: sends a command, prints the result's data.
cmd() {
        CTL send --node "$NODE" --type "$1" --resource "{\"type\":\"model\",\"id\":\"$2\"}" --data "$3" \
                --wait "${4:-60}" --print data 2>/dev/null || true
}
# field JSON EXPR
field() { json_get "$2" <<<"$1"; }

probe=$(cmd model.list "*" '{}' 10)
if [ "$(field "$probe" 'this.error ? this.error.code : "ok"')" = 2001 ]; then
        echo "# skip: this aiwm-worker has no model commands (model_cmd_register not wired into main.c)"
        exit 77
fi

# --- http: download, verify, progress ------------------------------------
dlctl POST fault '{"path":"/a.bin","mode":"trickle","rate":1000000}' >/dev/null
out=$(cmd model.download m-http "{\"source\":\"http\",\"sourcePath\":\"$DL/a.bin\",\"targetPath\":\"http/a\",\"sha256\":\"$(sha "$T/www/a.bin")\",\"credentials\":{\"token\":\"SECRET-TOKEN-xyz\"}}")
check "http download succeeds" test "$(field "$out" 'this.status')" = success
check "result: path, sizeBytes, files, source" test "$(field "$out" '[this.result.path, this.result.sizeBytes, this.result.files, this.result.source].join()')" = "$MODELS/http/a,3000000,1,http"
check "the file is in place and intact" test "$(sha "$MODELS/http/a/a.bin")" = "$(sha "$T/www/a.bin")"
ev=$(CTL events --node "$NODE" --type model.downloadProgress --since 0)
prog() { json_get "(() => { const e=this.events.map(x=>x.envelope).filter(x=>x.data.modelId==='$1'); return ($2); })()" <<<"$ev"; }
check "progress: downloading events, then one completed at 100%" test "$(prog m-http 'e.filter(x=>x.data.status==="completed" && x.data.progress===100).length + ":" + (e.filter(x=>x.data.status==="downloading").length >= 2)')" = "1:true"
check "progress: at most one event a second while downloading" test "$(prog m-http '(() => { const t=e.filter(x=>x.data.status==="downloading").map(x=>Date.parse(x.timestamp)); let ok=true; for (let i=1;i<t.length;i++) if (t[i]-t[i-1] < 900) ok=false; return ok; })()')" = true
check "progress: fields, bytesTotal known, speed measured" test "$(prog m-http '(() => { const d=e[e.length-1].data; const mid=e.filter(x=>x.data.speedBps>0).length>0; return [typeof d.originalMessageId, d.bytesTotal, d.bytesDownloaded, mid, typeof d.etaSeconds].join(); })()')" = "string,3000000,3000000,true,number"
check "progress events carry resource and metadata" test "$(prog m-http 'e[0].resource.type + ":" + e[0].resource.id + ":" + (typeof e[0].metadata)')" = "model:m-http:object"
check "credentials never logged" bash -c "! grep -q SECRET-TOKEN-xyz '$T/w.log'"
check "credentials not in the manifest" bash -c "! grep -rq SECRET-TOKEN-xyz '$MODELS/.manifests'"
dlctl POST reset '{}' >/dev/null

# --- resume after a dropped connection ------------------------------------
dlctl POST fault '{"path":"/big.bin","mode":"drop","after":3000000}' >/dev/null
out=$(cmd model.download m-drop "{\"source\":\"http\",\"sourcePath\":\"$DL/big.bin\",\"targetPath\":\"drop\",\"sha256\":\"$(sha "$T/www/big.bin")\"}")
check "dropped connection: download completes" test "$(field "$out" 'this.status')" = success
st=$(dlctl GET stats)
served=$(field "$st" 'this.paths["/big.bin"].bytes')
check "dropped connection: resumed with Range (served $served of 8000000)" test "$served" -lt 8100000
check "dropped connection: a ranged second request" test "$(field "$st" 'this.paths["/big.bin"].ranges.length >= 1')" = true
dlctl POST reset '{}' >/dev/null

# --- resume after kill -9 of the worker --------------------------------------
dlctl POST fault '{"path":"/big.bin","mode":"trickle","rate":1500000,"count":-1}' >/dev/null
mid=$(CTL send --node "$NODE" --type model.download --resource '{"type":"model","id":"m-kill"}' \
        --data "{\"source\":\"http\",\"sourcePath\":\"$DL/big.bin\",\"targetPath\":\"kill\",\"sha256\":\"$(sha "$T/www/big.bin")\"}" 2>/dev/null |
        json_get 'this.messageId')
staged() { find "$MODELS/.staging" -type f -name 'f-*' ! -name '*.meta' -printf '%s\n' 2>/dev/null | sort -n | tail -1; }
for i in $(seq 1 100); do [ "$(staged || echo 0)" -gt 3000000 ] 2>/dev/null && break; sleep 0.1; done
before=$(staged)
kill -9 "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null || true
check "kill -9 mid-download left $before bytes staged" test "${before:-0}" -gt 2000000
dlctl DELETE faults >/dev/null
sent_before=$(field "$(dlctl GET stats)" 'this.paths["/big.bin"].bytes')
run_worker w2
rec=$(CTL result --node "$NODE" --message-id "$mid" --wait 60)
check "after the restart: exactly one command.result, success" test "$(field "$rec" 'this.results.length + ":" + this.results[0].envelope.data.status')" = "1:success"
st=$(dlctl GET stats)
total=$(field "$st" 'this.paths["/big.bin"].bytes')
check "after the restart: only the missing bytes were served ($sent_before before the kill, $total in all)" test "$total" -lt 9000000
check "after the restart: resumed with Range" bash -c "curl -sS '$DL/_ctl/requests' | grep -q '\"range\": \"bytes=[1-9]'"
check "after the restart: the file is intact" test "$(sha "$MODELS/kill/big.bin")" = "$(sha "$T/www/big.bin")"
dlctl POST reset '{}' >/dev/null

# --- checksum mismatch: error, nothing placed ------------------------------
out=$(cmd model.download m-bad "{\"source\":\"http\",\"sourcePath\":\"$DL/a.bin\",\"targetPath\":\"bad\",\"sha256\":\"$(printf '0%.0s' $(seq 64))\"}")
check "checksum mismatch: error 3001 naming the checksum" test "$(field "$out" 'this.error.code + ":" + /checksum/.test(this.error.message)')" = "3001:true"
check "checksum mismatch: nothing placed" test ! -e "$MODELS/bad/a.bin"
ev=$(CTL events --node "$NODE" --type model.downloadProgress --since 0)
check "checksum mismatch: a failed progress event" test "$(prog m-bad 'e.filter(x=>x.data.status==="failed").length')" = 1

# --- path traversal and symlink escapes --------------------------------------
mkdir -p "$T/outside"
ln -s "$T/outside" "$MODELS/escape"
for tp in "../x" "/etc/aiwm" "a/../../x" "escape/m" "hub/x" ".staging/x"; do
        out=$(cmd model.download m-trav "{\"source\":\"http\",\"sourcePath\":\"$DL/a.bin\",\"targetPath\":\"$tp\"}" 20)
        check "targetPath $tp refused with 2001" test "$(field "$out" 'this.error && this.error.code')" = 2001
done
check "nothing written outside the cache" test -z "$(ls -A "$T/outside")"
out=$(cmd model.download m-abs "{\"source\":\"http\",\"sourcePath\":\"$DL/a.bin\",\"targetPath\":\"$MODELS/abs/ok\"}")
check "an absolute targetPath inside MODEL_CACHE_DIR is fine" test "$(field "$out" 'this.status')" = success

# --- S3 (s3rver behind a SigV4-verifying proxy) ------------------------------
if [ "$S3OK" = 1 ]; then
        mkdir -p "$T/s3src/sub dir"
        for i in 1 2 3 4; do head -c $((100000 * i)) /dev/urandom >"$T/s3src/part-$i.bin"; done
        head -c 5000 /dev/urandom >"$T/s3src/sub dir/x&y.bin"
        for f in part-1.bin part-2.bin part-3.bin part-4.bin; do
                curl -sS -T "$T/s3src/$f" "http://127.0.0.1:$S3P/models/llama/7b/$f" >/dev/null
        done
        curl -sS -T "$T/s3src/sub dir/x&y.bin" "http://127.0.0.1:$S3P/models/llama/7b/sub%20dir/x%26y.bin" >/dev/null
        curl -sS -T "$T/s3src/part-1.bin" "http://127.0.0.1:$S3P/models/llama/7b-other/not-me.bin" >/dev/null
        curl -sS -T "$T/www/full.bin" "http://127.0.0.1:$S3P/models/big/blob.bin" >/dev/null
        out=$(cmd model.download m-s3 '{"source":"minio","sourcePath":"models/llama/7b","targetPath":"s3/llama"}')
        check "S3 download succeeds" test "$(field "$out" 'this.status + ":" + this.result.files')" = "success:5"
        ok=true
        for f in part-1.bin part-2.bin part-3.bin part-4.bin "sub dir/x&y.bin"; do
                [ "$(sha "$MODELS/s3/llama/$f")" = "$(sha "$T/s3src/$f")" ] || ok=false
        done
        check "S3 objects in place and intact (nested key with space and &)" $ok
        check "S3: a sibling prefix (7b-other) is not included" test ! -e "$MODELS/s3/llama/not-me.bin"
        st=$(curl -sS "http://127.0.0.1:$S3PP/_ctl/stats")
        check "S3: every request carried a valid SigV4 signature" test "$(field "$st" 'this.sigv4.bad + ":" + (this.sigv4.ok >= 8)')" = "0:true"
        check "S3: the listing took 3 pages (2 keys each)" test "$(field "$st" 'this.paths["/models"].requests')" = 3
        out=$(cmd model.download m-s3bad '{"source":"minio","sourcePath":"models/llama/7b","targetPath":"s3/bad","credentials":{"username":"AKIAAIWMTEST","password":"wrong"}}')
        check "S3: a wrong secret is refused by the server (2003)" test "$(field "$out" 'this.error.code + ":" + /403/.test(this.error.message)')" = "2003:true"
        check "S3: the secret is never logged" bash -c "! grep -Fq 'aiwm/test+secret' '$T/w.log' '$T/w2.log'"
fi

# --- Hugging Face ---------------------------------------------------------------
out=$(cmd model.download m-hf '{"source":"huggingface","sourcePath":"aiwm-test/tiny-model","targetPath":"hf/tiny"}')
SNAP="$MODELS/hub/models--aiwm-test--tiny-model/snapshots/7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203"
check "HF download succeeds, path is the snapshot" test "$(field "$out" 'this.status + ":" + this.result.path + ":" + this.result.revision')" = "success:$SNAP:7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203"
check "HF: refs/main holds the commit (no newline)" test "$(cat "$MODELS/hub/models--aiwm-test--tiny-model/refs/main")" = 7c8a2f3e9d1b4a6c5e0f1a2b3c4d5e6f70819203
check "HF: snapshot entries are relative links into blobs" test "$(readlink "$SNAP/onnx/model.onnx")" = "../../../blobs/f8aed270a592b255d90b04785c0b130a968ae204948fc2755db1861c810c6c83"
check "HF: files identical to the repository's" diff -r "$SNAP" "$AIWM_SRC/tests/fixtures/hf/aiwm-test/tiny-model/files"
# Read back offline, the way huggingface_hub does (the real library when it
# is installed; otherwise its try_to_load_from_cache logic).
offline=$(HF_HUB_OFFLINE=1 HF_HUB_CACHE="$MODELS/hub" python3 - <<'EOF'
import os
try:
    from huggingface_hub import hf_hub_download, snapshot_download
    p = snapshot_download("aiwm-test/tiny-model")
    f = hf_hub_download("aiwm-test/tiny-model", "onnx/model.onnx")
    print("lib", os.path.isdir(p), os.path.getsize(f))
except ImportError:
    cache = os.environ["HF_HUB_CACHE"]
    repo = os.path.join(cache, "models--aiwm-test--tiny-model")
    with open(os.path.join(repo, "refs", "main")) as fh:
        rev = fh.read()
    f = os.path.join(repo, "snapshots", rev, "onnx/model.onnx")
    print("emulated", os.path.isdir(os.path.join(repo, "snapshots", rev)), os.path.getsize(f) if os.path.isfile(f) else -1)
EOF
)
check "HF: the cache reads back offline ($offline)" bash -c "[[ '$offline' == *' True 20000' ]]"
dlctl POST reset '{}' >/dev/null
out=$(cmd model.download m-priv '{"source":"huggingface","sourcePath":"aiwm-test/private-model","targetPath":"hf/priv"}')
check "HF private without a token: 2003 asking for credentials.token" test "$(field "$out" 'this.error.code + ":" + /credentials.token/.test(this.error.message)')" = "2003:true"
out=$(cmd model.download m-priv "{\"source\":\"huggingface\",\"sourcePath\":\"aiwm-test/private-model\",\"targetPath\":\"hf/priv\",\"credentials\":{\"token\":\"$HF_TOKEN_PRIVATE\"}}")
check "HF private with the token: success" test "$(field "$out" 'this.status')" = success
check "HF: the token was not sent to the CDN host" test "$(field "$(dlctl GET stats)" 'this.cdnAuth')" = 0
check "HF: the token never logged" bash -c "! grep -q '$HF_TOKEN_PRIVATE' '$T/w.log' '$T/w2.log'"
out=$(cmd model.download m-rev '{"source":"huggingface","sourcePath":"aiwm-test/tiny-model","version":"nope","targetPath":"hf/x"}')
check "HF unknown revision: 2003" test "$(field "$out" 'this.error.code')" = 2003

# --- coalesced duplicates -----------------------------------------------------------
dlctl POST reset '{}' >/dev/null
dlctl POST fault '{"path":"/dup.bin","mode":"trickle","rate":2000000}' >/dev/null
DUPDATA="{\"source\":\"http\",\"sourcePath\":\"$DL/dup.bin\",\"targetPath\":\"dup\"}"
m1=$(CTL send --node "$NODE" --type model.download --resource '{"type":"model","id":"m-dup"}' --data "$DUPDATA" 2>/dev/null | json_get 'this.messageId')
m2=$(CTL send --node "$NODE" --type model.download --resource '{"type":"model","id":"m-dup"}' --data "$DUPDATA" 2>/dev/null | json_get 'this.messageId')
r1=$(CTL result --node "$NODE" --message-id "$m1" --wait 60)
r2=$(CTL result --node "$NODE" --message-id "$m2" --wait 60)
check "duplicates: both commands succeed" test "$(field "$r1" 'this.results[0].envelope.data.status'):$(field "$r2" 'this.results[0].envelope.data.status')" = success:success
check "duplicates: one transfer (requests, bytes)" test "$(field "$(dlctl GET stats)" 'this.paths["/dup.bin"].requests + ":" + this.paths["/dup.bin"].bytes')" = "1:2500000"

# --- model.cache, model.list, model.delete -------------------------------------------
dlctl POST reset '{}' >/dev/null
out=$(cmd model.cache m-hf '{"source":"huggingface","sourcePath":"aiwm-test/tiny-model","targetPath":"hf/tiny"}')
check "model.cache of a complete model: alreadyCached, no network" test "$(field "$out" 'this.result.alreadyCached')" = true
check "model.cache: no request reached the servers" test "$(field "$(dlctl GET stats)" 'Object.keys(this.paths).length')" = 0
out=$(cmd model.list '*' '{}')
check "model.list has the models, complete, with usedBy" test "$(field "$out" '(() => { const m=this.result.models; const h=m.find(x=>x.modelId==="m-http"); return (m.length >= 6) + ":" + h.complete + ":" + h.sizeBytes + ":" + Array.isArray(h.usedBy); })()')" = "true:true:3000000:true"
out=$(cmd model.delete m-http '{}')
check "model.delete: freed bytes" test "$(field "$out" 'this.status + ":" + this.result.freedBytes')" = "success:3000000"
check "model.delete: files gone" test ! -e "$MODELS/http/a"
out=$(cmd model.delete m-http '{}')
check "model.delete of an unknown model: 2003" test "$(field "$out" 'this.error.code')" = 2003

# --- disk full: a 2 MiB tmpfs ------------------------------------------------------
SMALL="$T/small"
mkdir -p "$SMALL"
if mount -t tmpfs -o size=2m tmpfs "$SMALL" 2>/dev/null; then
        trap 'umount "$SMALL" 2>/dev/null || true; cleanup' EXIT
        kill "$WORKER_PID"
        wait "$WORKER_PID" 2>/dev/null || true
        MODELS="$SMALL/models"
        run_worker w3
        check "worker on the small cache registered" wait_log "$T/w3.log" "registered heartbeatInterval" 10
        if [ "$S3OK" = 1 ]; then
                out=$(cmd model.download m-full-s3 '{"source":"minio","sourcePath":"models/big","targetPath":"s3full"}')
                check "disk full (known sizes): 3003 before any transfer, with the numbers" test "$(field "$out" 'this.error.code + ":" + (this.error.details.neededBytes > this.error.details.availableBytes) + ":" + this.error.retryable')" = "3003:true:true"
        fi
        out=$(cmd model.download m-full "{\"source\":\"http\",\"sourcePath\":\"$DL/full.bin\",\"targetPath\":\"full\"}")
        check "disk full (ENOSPC while writing): 3003" test "$(field "$out" 'this.error.code')" = 3003
        part=$(find "$MODELS/.staging" -type f -name 'f-*' ! -name '*.meta' -printf '%s\n' 2>/dev/null | sort -n | tail -1)
        check "disk full: the staging file stays for a later resume (${part:-0} bytes)" test "${part:-0}" -gt 1000000
        kill "$WORKER_PID"
        wait "$WORKER_PID" 2>/dev/null || true
        umount "$SMALL" 2>/dev/null || true
else
        echo "# skip: cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN): disk-full checks not run"
fi

check "the worker never crashed" bash -c "! grep -Eq 'AddressSanitizer|runtime error|Segmentation' '$T'/w*.log"
finish
