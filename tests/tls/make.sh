#!/bin/sh
# Regenerate the test PKI: a CA, a server certificate for 127.0.0.1, one for the name
# server.dc1.consul only (as Consul's TLS guide issues them), a client certificate.
set -eu
days=36500
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca-key.pem -out ca.pem -days $days \
    -subj "/CN=breaker test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
for name in server server-name client; do
    if [ $name = server ]; then usage=serverAuth; san="subjectAltName=IP:127.0.0.1"; cn=127.0.0.1
    elif [ $name = server-name ]; then
        usage=serverAuth; san="subjectAltName=DNS:server.dc1.consul"; cn=server.dc1.consul
    else usage=clientAuth; san="subjectAltName=DNS:breaker-test-client"; cn=breaker-test-client; fi
    openssl req -newkey rsa:2048 -nodes -keyout $name-key.pem -out $name.csr -subj "/CN=$cn"
    printf '%s\n' "$san" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=$usage" \
        "subjectKeyIdentifier=hash" "authorityKeyIdentifier=keyid" > $name.ext
    openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
        -out $name.pem -days $days -extfile $name.ext
    rm $name.csr $name.ext
done
rm -f ca-key.pem ca.srl
