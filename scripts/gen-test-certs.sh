#!/usr/bin/env bash
# gen-test-certs.sh OUTDIR — test PKI for TLS tests of the worker and the test controller.
#
# Creates (EC P-256 keys, SHA-256 signatures):
#   ca.key ca.crt                 test CA ("AIWM Test CA")
#   server.key server.crt         CN=localhost, SAN DNS:localhost, IP:127.0.0.1, IP:::1, signed by the CA
#   server-chain.crt              server.crt followed by ca.crt
#   wrong-host.key wrong-host.crt CN=wrong.example, SAN DNS:wrong.example only, signed by the CA
#   self-signed.key self-signed.crt   CN=localhost with the right SANs but NOT signed by the CA
#   expired.key expired.crt       CN=localhost with the right SANs, signed by the CA, expired (2020)
#
# Idempotent: if every file exists and server.crt still verifies against ca.crt,
# nothing is regenerated. Needs the openssl CLI (1.1.1 or 3.x).
set -euo pipefail

if [[ $# -ne 1 || "$1" == -h || "$1" == --help ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1
mkdir -p "$out"
cd "$out"

files=(ca.key ca.crt server.key server.crt server-chain.crt wrong-host.key wrong-host.crt
       self-signed.key self-signed.crt expired.key expired.crt)
complete=1
for f in "${files[@]}"; do [[ -s $f ]] || complete=0; done
if [[ $complete == 1 ]] &&
   openssl verify -CAfile ca.crt server.crt >/dev/null 2>&1 &&
   openssl verify -CAfile ca.crt wrong-host.crt >/dev/null 2>&1; then
  echo "gen-test-certs: certificates in $out are up to date"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
umask 077

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

# --- CA
newkey ca.key
cat >"$tmp/ca.ext" <<'EOF'
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
openssl req -new -x509 -key ca.key -sha256 -days 3650 -subj "/O=AIWM Test/CN=AIWM Test CA" \
  -extensions v3_ca -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[v3_ca]\n'; cat "$tmp/ca.ext") \
  -out ca.crt

leaf_ext() { # $1 = subjectAltName value
  cat <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = $1
EOF
}

good_san='DNS:localhost, IP:127.0.0.1, IP:::1'

sign_leaf() { # $1 = name, $2 = CN, $3 = SAN
  newkey "$1.key"
  openssl req -new -key "$1.key" -subj "/O=AIWM Test/CN=$2" -out "$tmp/$1.csr"
  leaf_ext "$3" >"$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial "$tmp/ca.srl" \
    -sha256 -days 825 -extfile "$tmp/$1.ext" -out "$1.crt" 2>/dev/null
}

sign_leaf server localhost "$good_san"
sign_leaf wrong-host wrong.example 'DNS:wrong.example'
cat server.crt ca.crt >server-chain.crt

# --- self-signed (untrusted) certificate for the right host
newkey self-signed.key
openssl req -new -x509 -key self-signed.key -sha256 -days 825 -subj "/O=AIWM Test/CN=localhost" \
  -config <(printf '[req]\ndistinguished_name=dn\n[dn]\n[ext]\n'; leaf_ext "$good_san" | grep -v authorityKeyIdentifier) \
  -extensions ext -out self-signed.crt

# --- expired certificate: `openssl ca` is the only 3.0 command that takes explicit dates
newkey expired.key
openssl req -new -key expired.key -subj "/O=AIWM Test/CN=localhost" -out "$tmp/expired.csr"
mkdir -p "$tmp/ca/newcerts"
: >"$tmp/ca/index.txt"
echo 1000 >"$tmp/ca/serial"
cat >"$tmp/ca.cnf" <<EOF
[ca]
default_ca = test_ca
[test_ca]
dir = $tmp/ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
certificate = $PWD/ca.crt
private_key = $PWD/ca.key
default_md = sha256
policy = any
copy_extensions = none
unique_subject = no
[any]
organizationName = optional
commonName = supplied
[ext]
$(leaf_ext "$good_san")
EOF
openssl ca -batch -config "$tmp/ca.cnf" -extensions ext -notext \
  -startdate 20200101000000Z -enddate 20200201000000Z \
  -in "$tmp/expired.csr" -out expired.crt 2>/dev/null

chmod 644 ./*.crt
chmod 600 ./*.key
openssl verify -CAfile ca.crt server.crt wrong-host.crt >/dev/null
echo "gen-test-certs: wrote CA, server, wrong-host, self-signed and expired certificates to $out"
