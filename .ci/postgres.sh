#!/usr/bin/env bash
# Installs (Debian's `postgresql`), starts and prepares a local PostgreSQL server for the
# destination tests: role `klaviyo` (password `klaviyo`) owning database `klaviyo_test`.
# Idempotent; needs root. The tests read KLAVIYO_TEST_POSTGRES (default below).
set -euo pipefail

ROLE=klaviyo
PASSWORD=klaviyo
DATABASE=klaviyo_test

if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /usr/lib/postgresql 2>/dev/null)" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q postgresql >/dev/null
fi

# Debian's package creates the cluster `main` of its version; start every cluster it has.
if [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  pg_createcluster "$(ls /usr/lib/postgresql | sort -V | tail -1)" main
fi
service postgresql start >/dev/null
for _ in $(seq 1 30); do
  runuser -u postgres -- pg_isready -q -h 127.0.0.1 && break
  sleep 1
done
runuser -u postgres -- pg_isready -h 127.0.0.1

psql_admin() { (cd / && runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qtAc "$1"); }
if [ -z "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]; then
  psql_admin "CREATE ROLE $ROLE LOGIN PASSWORD '$PASSWORD'"
fi
if [ -z "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = '$DATABASE'")" ]; then
  psql_admin "CREATE DATABASE $DATABASE OWNER $ROLE"
fi
echo "PostgreSQL ready: postgresql://$ROLE:$PASSWORD@127.0.0.1:5432/$DATABASE"
