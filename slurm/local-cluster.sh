#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine (Debian 12, root, no systemd) for CI and local runs:
# munged + slurmctld + slurmd, plus slurmdbd + MariaDB so that sacct (which submitit polls) works.
#
# Usage: bash slurm/local-cluster.sh install|configure|start|stop|status|clean|all
#   all = install + configure + start; every step is idempotent, `start` reuses running daemons.
# Knobs (environment; `start` follows what `configure` wrote, except for the time-out):
#   SLURM_CI_ACCOUNTING=1     1 = slurmdbd + MariaDB (sacct works), 0 = no accounting (lighter, see README)
#   SLURM_CI_FAKE_GPUS=2      fake GPUs as GRES (symlinks to /dev/null); 0 = no GRES
#   SLURM_CI_PARTITION=debug  name of the single partition
#   SLURM_CI_READY_TIMEOUT=60 seconds to wait for each daemon and for the node to be usable
#   SLURM_CI_CRED_EXPIRE=10   munge credential lifetime, which is also the delay before a requeued job may start
set -euo pipefail
export LC_ALL=C

ACCOUNTING=${SLURM_CI_ACCOUNTING:-1}
FAKE_GPUS=${SLURM_CI_FAKE_GPUS:-2}
PARTITION=${SLURM_CI_PARTITION:-debug}
READY_TIMEOUT=${SLURM_CI_READY_TIMEOUT:-60}
CRED_EXPIRE=${SLURM_CI_CRED_EXPIRE:-10}

STATE_RUN_DIR=/run/slurm-ci
STARTED_PIDS=$STATE_RUN_DIR/started.pids  # "name pid" per daemon this script started; `stop` kills only these
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
CTLD_STATE_DIR=/var/spool/slurmctld
SLURMD_SPOOL_DIR=/var/spool/slurmd
FAKE_GPU_DIR=/var/spool/slurm-fakegpu
MUNGE_KEY=/etc/munge/munge.key
MARIADB_SOCKET=/run/mysqld/mysqld.sock
DB_USER=slurm
DB_PASSWORD=slurmci  # local-only: MariaDB runs with --skip-networking
STOP_TIMEOUT=30

BASE_PACKAGES=(munge slurmctld slurmd slurm-client)
ACCOUNTING_PACKAGES=(slurmdbd mariadb-server)

# daemon name (as in /proc/<pid>/comm) -> pid file it writes
declare -A PID_FILES=(
  [munged]=/run/munge/munged.pid
  [mariadbd]=/run/mysqld/mysqld.pid
  [slurmdbd]=/run/slurmdbd.pid
  [slurmctld]=/run/slurmctld.pid
  [slurmd]=/run/slurmd.pid
)
ALL_DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)  # start order; `stop` goes in reverse

log() { printf '[local-cluster] %s\n' "$*"; }
die() { printf '[local-cluster] ERROR: %s\n' "$*" >&2; exit 1; }

seconds_since() { awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.2f", now - start }'; }

require_root() { [[ $EUID -eq 0 ]] || die "must run as root (installs packages, writes /etc/slurm, starts daemons)"; }

validate_knobs() {
  [[ $ACCOUNTING == 0 || $ACCOUNTING == 1 ]] || die "SLURM_CI_ACCOUNTING must be 0 or 1, got '$ACCOUNTING'"
  local knob
  for knob in SLURM_CI_FAKE_GPUS=$FAKE_GPUS SLURM_CI_READY_TIMEOUT=$READY_TIMEOUT SLURM_CI_CRED_EXPIRE=$CRED_EXPIRE; do
    [[ ${knob#*=} =~ ^[0-9]+$ ]] || die "${knob%%=*} must be a non-negative integer, got '${knob#*=}'"
  done
  [[ $PARTITION =~ ^[A-Za-z0-9_-]+$ ]] || die "SLURM_CI_PARTITION must be a plain name, got '$PARTITION'"
}

node_name() { hostname -s; }

# ---------------------------------------------------------------------------------------------- processes

# Prints the pid in PIDFILE if that process is alive and is NAME (guards against stale files and reused pids).
live_pid() {
  local name=$1 pidfile=$2 pid
  [[ -r $pidfile ]] && read -r pid <"$pidfile" && [[ $pid =~ ^[0-9]+$ ]] || return 1
  is_alive "$name" "$pid" && echo "$pid"
}

# True if PID runs NAME; a zombie counts as gone (PID 1 here may not reap).
is_alive() {
  local name=$1 pid=$2 comm state
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$name" ]] || return 1
  state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ $state != Z ]]
}

started_by_us() { [[ -r $STARTED_PIDS ]] && grep -qx "$1 $2" "$STARTED_PIDS"; }

record_pid() {
  local name=$1 pid=$2
  mkdir -p "$STATE_RUN_DIR"
  touch "$STARTED_PIDS"
  # a fresh start of NAME replaces its stale line; the file keeps start order for `stop`
  grep -v "^$name " "$STARTED_PIDS" >"$STARTED_PIDS.tmp" || true
  echo "$name $pid" >>"$STARTED_PIDS.tmp"
  mv "$STARTED_PIDS.tmp" "$STARTED_PIDS"
}

# Returns 0 (and says so) when NAME already runs, so the caller skips starting it.
already_running() {
  local name=$1 pid
  pid=$(live_pid "$name" "${PID_FILES[$name]}") || return 1
  if started_by_us "$name" "$pid"; then
    log "$name already running (pid $pid, started by this script): reused"
  else
    log "$name already running (pid $pid, not started by this script): reused, and \`stop\` will leave it alone"
  fi
}

print_log_tails() {
  local logfile
  for logfile in /var/log/munge/munged.log "$LOG_DIR"/mariadb.log "$LOG_DIR"/slurmdbd.log \
    "$LOG_DIR"/slurmctld.log "$LOG_DIR"/slurmd.log "$LOG_DIR"/*.stderr; do
    [[ -s $logfile ]] || continue
    printf '\n===== last 25 lines of %s =====\n' "$logfile" >&2
    tail -n 25 "$logfile" >&2
  done
}

# wait_until DESCRIPTION COMMAND...: polls COMMAND for up to READY_TIMEOUT s; on time-out prints logs and exits.
wait_until() {
  local description=$1 deadline=$((SECONDS + READY_TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      printf '[local-cluster] ERROR: timed out after %ss waiting for %s\n' "$READY_TIMEOUT" "$description" >&2
      print_log_tails
      exit 1
    fi
    sleep 0.2
  done
}

# launch NAME COMMAND...: runs a daemon that forks into the background. Its stdio is detached (a pipe held
# open would hang `start | tee`); stderr goes to a file because errors before the daemon opens its own log
# (a bad slurm.conf) appear only there. A failing parent ends the script at once, with the logs.
launch() {
  local name=$1
  shift
  if ! "$@" </dev/null >/dev/null 2>"$LOG_DIR/$name.stderr"; then
    print_log_tails
    die "$name failed to start (\`$*\` exited non-zero; logs above)"
  fi
}

# The daemons fork into the background themselves; their pid file appears a moment after the parent exits.
record_from_pid_file() {
  local name=$1 started_at=$2 pid
  wait_until "$name to write ${PID_FILES[$name]}" live_pid "$name" "${PID_FILES[$name]}"
  pid=$(live_pid "$name" "${PID_FILES[$name]}")
  record_pid "$name" "$pid"
  log "$name started (pid $pid, $(seconds_since "$started_at") s)"
}

# ---------------------------------------------------------------------------------------------- install

package_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

cmd_install() {
  require_root
  local packages=("${BASE_PACKAGES[@]}") missing=() package started_at=$EPOCHREALTIME
  ((ACCOUNTING)) && packages+=("${ACCOUNTING_PACKAGES[@]}")
  for package in "${packages[@]}"; do
    package_installed "$package" || missing+=("$package")
  done
  if ((${#missing[@]} == 0)); then
    log "install: ${packages[*]} already installed"
    return
  fi
  # Without systemd the postinst scripts' `invoke-rc.d slurmctld start || exit 1` would start daemons that
  # are not configured yet and fail the install; a policy-rc.d that exits 101 tells invoke-rc.d not to start.
  local policy=/usr/sbin/policy-rc.d temporary_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# temporary, from slurm/local-cluster.sh install\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    temporary_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT  # also when apt-get fails
    log "install: added a temporary $policy so package scripts do not start daemons"
  fi
  log "install: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
  if ((temporary_policy)); then
    rm -f "$policy"
    trap - EXIT
  fi
  log "install: done in $(seconds_since "$started_at") s"
}

# ---------------------------------------------------------------------------------------------- configure

CONFIG_CHANGED=0

# write_if_changed PATH MODE CONTENT: rewrites PATH only when CONTENT differs, so `all` twice is a no-op.
write_if_changed() {
  local path=$1 mode=$2 content=$3
  if [[ -f $path ]] && [[ "$(cat "$path")" == "$content" ]]; then
    chmod "$mode" "$path"
    return
  fi
  printf '%s\n' "$content" >"$path.tmp"
  chmod "$mode" "$path.tmp"
  mv "$path.tmp" "$path"
  CONFIG_CHANGED=1
  log "configure: wrote $path"
}

ensure_hostname_resolves() {
  local host
  host=$(node_name)
  if ! getent hosts "$host" >/dev/null; then
    echo "127.0.0.1 $host" >>/etc/hosts
    log "configure: added '127.0.0.1 $host' to /etc/hosts (slurmd finds its node by hostname)"
  fi
}

ensure_munge_key() {
  if [[ ! -s $MUNGE_KEY ]]; then
    mungekey --create --keyfile="$MUNGE_KEY"
    log "configure: created $MUNGE_KEY"
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 400 "$MUNGE_KEY"
}

# NodeName hardware fields as `slurmd -C` detects them, with RealMemory at 90 % to leave room for the OS.
node_hardware() {
  local detected field fields=()
  detected=$(slurmd -C | awk 'NR == 1')
  for field in $detected; do
    case $field in
      NodeName=*) ;;
      RealMemory=*) fields+=("RealMemory=$((${field#RealMemory=} * 90 / 100))") ;;
      *) fields+=("$field") ;;
    esac
  done
  echo "${fields[*]}"
}

slurm_conf() {
  local host=$1 hardware=$2 accounting_lines gres_lines="" node_gres=""
  if ((ACCOUNTING)); then
    accounting_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
  else
    # without accounting sacct fails, and submitit never sees jobs that die without a result (see README)
    accounting_lines="AccountingStorageType=accounting_storage/none"
  fi
  if ((FAKE_GPUS > 0)); then
    gres_lines="GresTypes=gpu"
    node_gres=" Gres=gpu:$FAKE_GPUS"
  fi
  cat <<EOF
# generated by slurm/local-cluster.sh - single-node CI cluster; edits are overwritten by \`configure\`
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire is also how long a requeued job must wait before it may start again (default 120 s)
AuthInfo=cred_expire=$CRED_EXPIRE
CredType=cred/munge
MpiDefault=none
# no cgroups needed: memory and GPU binding are not enforced, they are scheduling numbers only
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# requeued jobs only become eligible after cred_expire and are picked up by the next periodic
# scheduler/backfill pass (defaults 60 s / 30 s): poll fast so requeue tests take seconds, not minutes
SchedulerParameters=bf_interval=1,sched_interval=2
ReturnToService=2
MailProg=/bin/true
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldPidFile=${PID_FILES[slurmctld]}
SlurmdPidFile=${PID_FILES[slurmd]}
StateSaveLocation=$CTLD_STATE_DIR
SlurmdSpoolDir=$SLURMD_SPOOL_DIR
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
$accounting_lines
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$gres_lines
InactiveLimit=0
KillWait=5
# finished jobs stay visible to scontrol for 10 min
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
# jobs without --mem must not take the whole node
DefMemPerCPU=1024
NodeName=$host NodeAddr=127.0.0.1 $hardware$node_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# Fake GPUs must be character devices (a plain file is rejected, no File= makes the node INVAL).
configure_fake_gpus() {
  local index
  if ((FAKE_GPUS == 0)); then
    rm -f "$CONF_DIR/gres.conf"
    return
  fi
  mkdir -p "$FAKE_GPU_DIR"
  rm -f "$FAKE_GPU_DIR"/nvidia*
  for ((index = 0; index < FAKE_GPUS; index++)); do
    ln -s /dev/null "$FAKE_GPU_DIR/nvidia$index"
  done
  write_if_changed "$CONF_DIR/gres.conf" 644 "AutoDetect=off
Name=gpu File=$FAKE_GPU_DIR/nvidia[0-$((FAKE_GPUS - 1))]"
}

slurmdbd_conf() {
  cat <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
DebugLevel=info
LogFile=$LOG_DIR/slurmdbd.log
PidFile=${PID_FILES[slurmdbd]}
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=$DB_USER
StoragePass=$DB_PASSWORD
EOF
}

cmd_configure() {
  require_root
  command -v slurmd >/dev/null || die "slurmd not found: run \`bash slurm/local-cluster.sh install\` first"
  local host
  host=$(node_name)
  ensure_hostname_resolves
  ensure_munge_key
  mkdir -p "$CONF_DIR" "$LOG_DIR" "$CTLD_STATE_DIR" "$SLURMD_SPOOL_DIR" "$STATE_RUN_DIR"
  write_if_changed "$CONF_DIR/slurm.conf" 644 "$(slurm_conf "$host" "$(node_hardware)")"
  configure_fake_gpus
  if ((ACCOUNTING)); then
    write_if_changed "$CONF_DIR/slurmdbd.conf" 600 "$(slurmdbd_conf)"  # holds the DB password
  fi
  if ((CONFIG_CHANGED)) && live_pid slurmctld "${PID_FILES[slurmctld]}" >/dev/null; then
    log "configure: WARNING: the configuration changed while the cluster runs; apply it with \`stop\` then \`start\`"
  fi
  log "configure: done (node $host, partition $PARTITION, accounting $ACCOUNTING, fake GPUs $FAKE_GPUS)"
}

# ---------------------------------------------------------------------------------------------- start

accounting_configured() { grep -q '^AccountingStorageType=accounting_storage/slurmdbd' "$CONF_DIR/slurm.conf"; }

# The partition written by `configure`, so `start` and `status` need not be given the same knobs again.
configured_partition() { sed -n 's/^PartitionName=\([^ ]*\) .*/\1/p' "$CONF_DIR/slurm.conf" 2>/dev/null; }

munge_answers() { munge -n </dev/null | unmunge >/dev/null; }

start_munged() {
  already_running munged && return
  local started_at=$EPOCHREALTIME
  install -d -o munge -g munge -m 755 /run/munge
  launch munged runuser -u munge -- munged
  record_from_pid_file munged "$started_at"
  wait_until "munged to sign and verify a credential" munge_answers
}

mariadb_answers() { mariadb-admin --socket="$MARIADB_SOCKET" ping; }

start_mariadbd() {
  if ! already_running mariadbd; then
    local started_at=$EPOCHREALTIME
    install -d -o mysql -g mysql -m 755 /run/mysqld
    # mariadbd writes its log as user mysql, and $LOG_DIR belongs to another user
    touch "$LOG_DIR/mariadb.log"
    chown mysql:mysql "$LOG_DIR/mariadb.log"
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql --skip-test-db >/dev/null
    # mariadbd does not daemonize: own session so it outlives this shell and its process group
    setsid mariadbd --user=mysql --skip-networking --pid-file="${PID_FILES[mariadbd]}" \
      --socket="$MARIADB_SOCKET" --log-error="$LOG_DIR/mariadb.log" </dev/null >/dev/null 2>"$LOG_DIR/mariadbd.stderr" &
    record_from_pid_file mariadbd "$started_at"
  fi
  wait_until "MariaDB to answer on $MARIADB_SOCKET" mariadb_answers
  mariadb --socket="$MARIADB_SOCKET" -e \
    "CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASSWORD';
     GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';"
}

slurmdbd_listens() { (exec 3<>/dev/tcp/127.0.0.1/6819); }

start_slurmdbd() {
  already_running slurmdbd && return
  local started_at=$EPOCHREALTIME
  launch slurmdbd slurmdbd
  record_from_pid_file slurmdbd "$started_at"
  wait_until "slurmdbd to listen on port 6819" slurmdbd_listens
}

slurmctld_answers() { scontrol ping | grep -q 'is UP'; }

start_slurmctld() {
  already_running slurmctld && return
  local started_at=$EPOCHREALTIME
  launch slurmctld slurmctld
  record_from_pid_file slurmctld "$started_at"
  wait_until "slurmctld to answer scontrol ping" slurmctld_answers
}

start_slurmd() {
  already_running slurmd && return
  local started_at=$EPOCHREALTIME
  launch slurmd slurmd
  record_from_pid_file slurmd "$started_at"
}

# Usable = partition up and the node registered in a schedulable state (busy is fine when reusing).
node_usable() {
  [[ $(sinfo -h -p "$1" -o %a) == up ]] || return 1
  [[ $(sinfo -h -N -n "$(node_name)" -o %T) =~ ^(idle|mixed|allocated|completing)$ ]]
}

cmd_start() {
  require_root
  [[ -f $CONF_DIR/slurm.conf ]] ||
    die "$CONF_DIR/slurm.conf missing: run \`bash slurm/local-cluster.sh configure\` first"
  local started_at=$EPOCHREALTIME smoke_at partition
  partition=$(configured_partition)
  mkdir -p "$STATE_RUN_DIR" "$LOG_DIR"
  start_munged
  if accounting_configured; then
    start_mariadbd
    start_slurmdbd
  fi
  start_slurmctld
  start_slurmd
  wait_until "node $(node_name) to be idle in partition $partition" node_usable "$partition"
  smoke_at=$EPOCHREALTIME
  if ! timeout "$READY_TIMEOUT" srun --partition="$partition" --time=1 true </dev/null; then
    print_log_tails
    die "smoke test \`srun true\` failed or took longer than ${READY_TIMEOUT}s"
  fi
  log "start: srun true took $(seconds_since "$smoke_at") s"
  log "start: cluster ready in $(seconds_since "$started_at") s (partition $partition)"
  log "start: stop it with \`bash slurm/local-cluster.sh stop\`"
}

# ---------------------------------------------------------------------------------------------- stop

stop_pid() {
  local name=$1 pid=$2 deadline
  if ! is_alive "$name" "$pid"; then
    log "$name (pid $pid) is not running any more: skipped"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_TIMEOUT))
  while is_alive "$name" "$pid" && ((SECONDS < deadline)); do
    sleep 0.1
  done
  if is_alive "$name" "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    log "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s: sent SIGKILL"
  else
    log "$name (pid $pid) stopped"
  fi
}

cmd_stop() {
  require_root
  if [[ ! -s $STARTED_PIDS ]]; then
    log "stop: nothing recorded in $STARTED_PIDS, so no daemon started by this script to stop"
    return
  fi
  local lines=() index name pid started_at=$EPOCHREALTIME
  mapfile -t lines <"$STARTED_PIDS"
  for ((index = ${#lines[@]} - 1; index >= 0; index--)); do
    read -r name pid <<<"${lines[index]}"
    stop_pid "$name" "$pid"
  done
  rm -f "$STARTED_PIDS"
  log "stop: done in $(seconds_since "$started_at") s"
}

# ---------------------------------------------------------------------------------------------- status, clean

cmd_status() {
  local name pid origin
  for name in "${ALL_DAEMONS[@]}"; do
    if pid=$(live_pid "$name" "${PID_FILES[$name]}"); then
      started_by_us "$name" "$pid" && origin="started by this script" || origin="not started by this script"
      printf '%-10s running (pid %s, %s)\n' "$name" "$pid" "$origin"
    else
      printf '%-10s not running\n' "$name"
    fi
  done
  if ! live_pid slurmctld "${PID_FILES[slurmctld]}" >/dev/null ||
    ! node_usable "$(configured_partition)" 2>/dev/null; then
    log "status: cluster NOT ready; start it with \`bash slurm/local-cluster.sh all\`"
    return 1
  fi
  printf '\n%s\n\n%s\n' "$(sinfo)" "$(squeue)"
  log "status: cluster ready"
}

cmd_clean() {
  require_root
  local name
  for name in slurmctld slurmd; do
    if live_pid "$name" "${PID_FILES[$name]}" >/dev/null; then
      die "clean: $name is running; run \`bash slurm/local-cluster.sh stop\` first"
    fi
  done
  rm -rf "${CTLD_STATE_DIR:?}"/* "${SLURMD_SPOOL_DIR:?}"/*
  # sacct keeps the old jobs; for a repeated id `sacct -j` reports the most recent job (man sacct, --duplicates)
  log "clean: wiped $CTLD_STATE_DIR and $SLURMD_SPOOL_DIR (jobs are forgotten, ids restart at 1)"
}

main() {
  validate_knobs
  case ${1:-} in
    install) cmd_install ;;
    configure) cmd_configure ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    clean) cmd_clean ;;
    all)
      # separate commands: `set -e` does not apply inside functions called from an && list
      cmd_install
      cmd_configure
      cmd_start
      ;;
    *)
      echo "usage: bash slurm/local-cluster.sh install|configure|start|stop|status|clean|all" >&2
      exit 2
      ;;
  esac
}

main "$@"
