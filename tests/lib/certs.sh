#!/usr/bin/env bash
# certs.sh DIR: a throw-away test PKI in DIR (made once, reused if present).
#   ca.pem/ca.key          test CA
#   server.pem/server.key  leaf for DNS:localhost, IP:127.0.0.1, IP:::1
#   client.pem/client.key  client certificate signed by the CA (mutual TLS)
#   expired.pem/.key       leaf for localhost, expired
#   self.pem/self.key      self-signed leaf for localhost
#   wrongname.pem/.key     leaf for DNS:wrong.example only
set -eu
dir=$1
mkdir -p "$dir"
cd "$dir"
[ -s server.pem ] && [ -s wrongname.pem ] && exit 0
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=pipeops test CA" \
	-keyout ca.key -out ca.pem \
	-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
leaf() { # name subject san days
	q openssl req -newkey rsa:2048 -nodes -subj "/CN=$2" -keyout "$1.key" -out "$1.csr"
	printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" > "$1.ext"
	q openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
		-days "$4" -extfile "$1.ext" -out "$1.pem"
	rm -f "$1.csr" "$1.ext"
}
leaf server localhost "DNS:localhost,IP:127.0.0.1,IP:::1" 3650
leaf client pipeops-agent "DNS:pipeops-agent" 3650
leaf wrongname wrong.example "DNS:wrong.example" 3650
# expired: OpenSSL 3.0 has no -not_before; -days -1 gives a certificate
# whose notAfter lies a day before now, which every verifier calls expired.
q openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout expired.key -out expired.csr
printf 'subjectAltName=DNS:localhost\n' > expired.ext
q openssl x509 -req -in expired.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
	-days -1 -extfile expired.ext -out expired.pem
rm -f expired.csr expired.ext
q openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=localhost" \
	-addext subjectAltName=DNS:localhost -keyout self.key -out self.pem
chmod 600 ./*.key
