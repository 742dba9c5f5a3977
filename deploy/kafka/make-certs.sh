#!/bin/sh
# The Kafka broker's TLS material, made with keytool alone (any JDK 11+; the apache/kafka
# image has one, so Compose runs this in that image as the one-shot service kafka-certs):
#
#   make-certs.sh BROKER_DIR CA_DIR
#
# BROKER_DIR/broker.p12      the broker's key and certificate (signed by the CA), PKCS#12
# BROKER_DIR/truststore.p12  the CA certificate, PKCS#12 (the controller listener's mutual TLS)
# CA_DIR/ca.crt              the CA certificate, PEM: what every client verifies the broker with
#
# Both stores are protected by PGHD_KAFKA_SSL_PASSWORD. The broker certificate's subject is
# CN=kafka-broker (the broker's own principal on the controller listener, a super user in
# deploy/kafka/server.properties) and its names are PGHD_KAFKA_CERT_SAN (default: the
# Compose host name kafka, localhost, 127.0.0.1). The CA's private key is not kept: to renew,
# delete the files (Compose: the kafka-tls and kafka-ca volumes), run this again and restart
# Kafka and the services, which read the new ca.crt. Existing files are kept as they are.
set -eu
broker_dir=${1:?usage: make-certs.sh BROKER_DIR CA_DIR}
ca_dir=${2:?usage: make-certs.sh BROKER_DIR CA_DIR}
pass=${PGHD_KAFKA_SSL_PASSWORD:?set PGHD_KAFKA_SSL_PASSWORD}
san=${PGHD_KAFKA_CERT_SAN:-dns:kafka,dns:localhost,ip:127.0.0.1}
days=${PGHD_KAFKA_CERT_DAYS:-825}

if [ -s "$broker_dir/broker.p12" ] && [ -s "$broker_dir/truststore.p12" ] && [ -s "$ca_dir/ca.crt" ]; then
    echo "kafka TLS material present in $broker_dir and $ca_dir: kept"
    exit 0
fi
mkdir -p "$broker_dir" "$ca_dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

keytool -genkeypair -noprompt -alias ca -dname "CN=pghd-kafka-ca" -keyalg RSA -keysize 3072 \
    -validity "$days" -ext bc:c -storetype PKCS12 -keystore "$work/ca.p12" -storepass "$pass"
keytool -exportcert -rfc -alias ca -keystore "$work/ca.p12" -storepass "$pass" -file "$work/ca.crt"

keytool -genkeypair -noprompt -alias broker -dname "CN=kafka-broker" -keyalg RSA -keysize 2048 \
    -validity "$days" -storetype PKCS12 -keystore "$work/broker.p12" -storepass "$pass"
keytool -certreq -alias broker -keystore "$work/broker.p12" -storepass "$pass" -file "$work/broker.csr"
keytool -gencert -rfc -alias ca -keystore "$work/ca.p12" -storepass "$pass" -validity "$days" \
    -infile "$work/broker.csr" -outfile "$work/broker.crt" -ext "san=$san" \
    -ext ku:c=digitalSignature,keyEncipherment -ext eku=serverAuth,clientAuth
keytool -importcert -noprompt -alias ca -file "$work/ca.crt" -keystore "$work/broker.p12" -storepass "$pass"
keytool -importcert -noprompt -alias broker -file "$work/broker.crt" -keystore "$work/broker.p12" -storepass "$pass"
keytool -importcert -noprompt -alias ca -file "$work/ca.crt" -storetype PKCS12 \
    -keystore "$work/truststore.p12" -storepass "$pass"

# Readable by the broker's user whoever runs this (the stores are password-protected; the
# CA certificate is public).
chmod 644 "$work/broker.p12" "$work/truststore.p12" "$work/ca.crt"
mv "$work/broker.p12" "$work/truststore.p12" "$broker_dir/"
mv "$work/ca.crt" "$ca_dir/"
echo "kafka TLS material written: $broker_dir/broker.p12, $broker_dir/truststore.p12, $ca_dir/ca.crt"
