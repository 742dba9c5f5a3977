#!/bin/sh
# Compose's Kafka (apache/kafka image): on first start, format the storage with the two SCRAM
# users that must exist before any client can make one (broker: inter-broker; admin: topics,
# users and ACLs), then run the broker with deploy/kafka/server.properties, which reads the
# passwords from this environment. Also writes the admin's client settings for the health
# check (readable by this container's user only).
#
# Passwords must not contain ',', ']', '"' or whitespace (they travel in kafka-storage's
# --add-scram argument and in JAAS configuration): `openssl rand -hex 32` makes good ones.
#
# Paths (defaults: the Compose container's): PGHD_KAFKA_CONFIG, KAFKA_HOME,
# PGHD_KAFKA_ADMIN_CLIENT_CONFIG, PGHD_KAFKA_CA_FILE.
set -eu
config=${PGHD_KAFKA_CONFIG:-/etc/pghd/kafka/server.properties}
bin=${KAFKA_HOME:-/opt/kafka}/bin
client_config=${PGHD_KAFKA_ADMIN_CLIENT_CONFIG:-/tmp/admin-client.properties}
ca_file=${PGHD_KAFKA_CA_FILE:-/etc/pghd/kafka-ca/ca.crt}
: "${PGHD_KAFKA_BROKER_PASSWORD:?}" "${PGHD_KAFKA_ADMIN_PASSWORD:?}" "${PGHD_KAFKA_SSL_PASSWORD:?}"
data=$(sed -n 's/^log\.dirs=//p' "$config")

if [ ! -f "$data/meta.properties" ]; then
    "$bin/kafka-storage.sh" format --config "$config" \
        --cluster-id "$("$bin/kafka-storage.sh" random-uuid)" \
        --add-scram "SCRAM-SHA-512=[name=broker,password=$PGHD_KAFKA_BROKER_PASSWORD]" \
        --add-scram "SCRAM-SHA-512=[name=admin,password=$PGHD_KAFKA_ADMIN_PASSWORD]"
fi

umask 077
cat > "$client_config" <<PROPERTIES
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$PGHD_KAFKA_ADMIN_PASSWORD";
ssl.truststore.type=PEM
ssl.truststore.location=$ca_file
PROPERTIES

exec "$bin/kafka-server-start.sh" "$config"
