#!/bin/sh
# First start: create the cluster with POSTGRES_USER as superuser (password auth) and
# POSTGRES_DB; every start: run the server in the foreground on PGPORT.
set -eu
user=${POSTGRES_USER:-postgres}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}" >"$pwfile"
    initdb --username "$user" --pwfile "$pwfile" --auth-local trust --auth-host scram-sha-256 \
        --encoding UTF8 --locale C.UTF-8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    db=${POSTGRES_DB:-$user}
    if [ "$db" != postgres ]; then
        postgres --single -D "$PGDATA" -c "listen_addresses=" postgres <<SQL >/dev/null
CREATE DATABASE "$db" OWNER "$user";
SQL
    fi
fi
exec postgres -D "$PGDATA" -c "listen_addresses=${POSTGRES_LISTEN:-*}" -p "$PGPORT"
