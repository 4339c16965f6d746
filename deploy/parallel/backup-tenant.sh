#!/usr/bin/env bash
# Back up a whole organisation on one machine as SHARDS separate processes with GNU parallel: each process is
# one shard (its own drives, its own folders under ROOT), so one stuck or crashed process leaves the others'
# drives alone, and a re-run of the same command resumes every drive where it stopped.
#
#   TENANT=contoso.onmicrosoft.com CLIENT_ID=… APP_PEM=/etc/odbackup/app.pem ROOT=/srv/backup/m365 \
#     SHARDS=4 ./backup-tenant.sh
#
# One process with --drives-at-once does the same work with one throttle gate for all drives; separate
# processes share the service's budget for the app without knowing of each other, so keep SHARDS ×
# --drives-at-once × --concurrency modest (each process still honours every Retry-After it is given).
set -euo pipefail
: "${TENANT:?}" "${CLIENT_ID:?}" "${APP_PEM:?}" "${ROOT:?}"
SHARDS=${SHARDS:-4}
export ODBACKUP_CONFIG_DIR=${ODBACKUP_CONFIG_DIR:-$HOME/.config/odbackup-tenant}
mkdir -p "$ODBACKUP_CONFIG_DIR/logs"

odbackup login --app --tenant "$TENANT" --client-id "$CLIENT_ID" --certificate "$APP_PEM"

# Discover once, so every shard splits the same list (and the directory is listed once, not SHARDS times).
odbackup drives --all-users --all-sites --json > "$ODBACKUP_CONFIG_DIR/drives.json"

# --line-buffer keeps each shard's lines whole; --joblog records each shard's exit code. The worst shard's exit
# code is this script's: parallel exits with the number of failed jobs, so it is taken from the joblog.
status=0
parallel --line-buffer --tag --joblog "$ODBACKUP_CONFIG_DIR/logs/joblog" -j "$SHARDS" \
  odbackup backup --drives-from "$ODBACKUP_CONFIG_DIR/drives.json" --dest "$ROOT" \
    --shard {}/"$SHARDS" --drives-at-once 2 --log-file "$ODBACKUP_CONFIG_DIR/logs/shard-{}.log" \
  ::: $(seq 0 $((SHARDS - 1))) || status=$?
worst=$(awk 'NR > 1 && $7 > w { w = $7 } END { print w + 0 }' "$ODBACKUP_CONFIG_DIR/logs/joblog")
exit $(( worst > 0 ? worst : status ))
