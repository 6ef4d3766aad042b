#!/usr/bin/env bash
# Development certificates for the Sink TLS listener (docs/sink.md), made with openssl:
#
#   <dir>/ca.pem, ca.key               a development CA (signs the server and the clients)
#   <dir>/server.pem, server.key       the Sink server certificate: SAN IP 127.0.0.1, DNS localhost
#   <dir>/clients/<id>.pem, <id>.key   one client certificate per id, subject CN = <id>
#
# Usage: scripts/dev-certs.sh [CLIENT_ID ...]        (default client: dev-meter-1)
#        CERTS_DIR=path scripts/dev-certs.sh ...      (default dir: target/dev-certs)
#        make certs CLIENTS="meter-7 meter-8"
#
# Existing files are kept, so running it again with new ids adds client certificates
# signed by the same CA. Delete the directory to start over. Development only: the CA
# key sits unencrypted next to the certificates.
set -euo pipefail

if ! command -v openssl >/dev/null 2>&1; then
  echo "openssl is required (e.g. sudo apt-get install -y openssl)" >&2
  exit 1
fi

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${CERTS_DIR:-$root/target/dev-certs}"
days="${CERTS_DAYS:-825}"
if [ "$#" -eq 0 ]; then
  set -- dev-meter-1
fi

mkdir -p "$dir/clients"
cd "$dir"
umask 077
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

newkey() { # an EC P-256 private key (PKCS#8 PEM)
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
}

serial() { # a random positive serial number
  echo "0x$(openssl rand -hex 16 | sed 's/^./4/')"
}

# $1 key, $2 subject, $3 extensions file, $4 output certificate
sign() {
  openssl req -new -key "$1" -subj "$2" -out "$tmp/req.csr"
  openssl x509 -req -in "$tmp/req.csr" -CA ca.pem -CAkey ca.key -set_serial "$(serial)" \
    -days "$days" -sha256 -extfile "$3" -out "$4" 2>/dev/null
}

if [ ! -f ca.pem ] || [ ! -f ca.key ]; then
  newkey ca.key
  openssl req -x509 -new -key ca.key -sha256 -days 3650 -set_serial "$(serial)" \
    -subj "/O=Murmuration development/CN=Murmuration dev Sink CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
    -addext "subjectKeyIdentifier=hash" \
    -out ca.pem
  rm -f server.pem # a new CA: the server certificate must be signed again
  echo "created $dir/ca.pem (development CA)"
fi

if [ ! -f server.pem ] || [ ! -f server.key ]; then
  newkey server.key
  cat >"$tmp/server.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EOF
  sign server.key "/O=Murmuration development/CN=localhost" "$tmp/server.ext" server.pem
  echo "created $dir/server.pem (SAN IP:127.0.0.1, DNS:localhost)"
fi

cat >"$tmp/client.ext" <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EOF
for id in "$@"; do
  case "$id" in
    "" | *[[:space:]/\\]* )
      echo "skipping client id '$id': it must be non-empty, without whitespace, / or \\" >&2
      continue
      ;;
  esac
  if [ -f "clients/$id.pem" ] && [ -f "clients/$id.key" ]; then
    echo "kept    $dir/clients/$id.pem"
    continue
  fi
  newkey "clients/$id.key"
  sign "clients/$id.key" "/O=Murmuration development devices/CN=$id" "$tmp/client.ext" "clients/$id.pem"
  echo "created $dir/clients/$id.pem (client id $id)"
done
chmod 644 ./*.pem clients/*.pem

cat <<EOF

Run a node with a TLS Sink listener:
  MURMUR_DEV=1 \\
  MURMUR_SINK_TLS_CERT=$dir/server.pem \\
  MURMUR_SINK_TLS_KEY=$dir/server.key \\
  MURMUR_SINK_TLS_CLIENT_CA=$dir/ca.pem \\
  target/debug/murmur serve    # after make build
Devices trust $dir/ca.pem and present clients/<id>.pem with clients/<id>.key.
EOF
