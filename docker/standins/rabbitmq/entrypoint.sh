#!/bin/sh
# The official image's settings: its first user from the environment (made when the node's database is new),
# listeners on every interface, logs on the console only.
set -eu
cat > /etc/rabbitmq/rabbitmq.conf <<CONF
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS:-guest}
loopback_users.guest = false
listeners.tcp.default = 5672
management.tcp.port = 15672
log.console = true
log.file = false
CONF
exec "$@"
