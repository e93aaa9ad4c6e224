# shellcheck shell=bash source-path=SCRIPTDIR
# Shared helpers of cluster-setup/{kind,gke}/{up,down}. Source it; do not run it.
#
#   run CMD ARGS...         print the command, then run it (with --dry-run: only print it)
#   query CMD ARGS...       run a read-only command that only inspects state (skipped with --dry-run)
#   try_step WHAT CMD...    run a step that must not stop the script (teardown): report a failure, go on
#   check_tool, check_kubectl, check_docker_engine, check_inotify, check_disk, then finish_checks:
#                           prerequisite checks that report every failure, then stop (not in a dry run)
#   build_workshop_image ARGS...       cluster-setup/image (the one image, built where it is used)
#   install_profile CTX     the workshop profile: cert-manager, Training Operator, Katib, KServe, KFP,
#                           every bundle applied in full on every run (server-side), so a re-run repairs
#   create_workshop_secrets CTX        the workshop namespace and its Secrets (random values, only if missing),
#                                      and the admin token's copy in namespace kubeflow (Kubeflow Pipelines runs)
#   install_jupyterhub CTX VALUES...   the JupyterHub release (Zero to JupyterHub chart)
# The ERR trap set here reports the failing command and the file and line of every call leading to it.
#
# Every version it installs comes from ../versions.env.

CLUSTER_SETUP_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "${CLUSTER_SETUP_DIR}/.." && pwd)"
# shellcheck source=../versions.env
source "${CLUSTER_SETUP_DIR}/versions.env"

DRY_RUN=0
PREREQ_FAILURES=0
SCRIPT_NAME="cluster-setup/$(basename "$(dirname "$0")")/$(basename "$0")"

# --- errors ------------------------------------------------------------------------------------------

# Called by the ERR trap: say which command failed, from which line of which file, and what to do next.
on_err() {
  local status=$1 command=$2 frame where=""
  # The failing command inside run() is "$@"; show the command run() was given instead.
  if [[ "${FUNCNAME[1]:-}" == run ]]; then
    command="${RUN_COMMAND}"
  fi
  # Innermost frame first: file and line of each call on the way to the failure.
  for ((frame = 1; frame < ${#FUNCNAME[@]}; frame++)); do
    where+="$(printf '\n  at %s line %s (%s)' "${BASH_SOURCE[frame]#"${REPO_ROOT}/"}" \
      "${BASH_LINENO[frame - 1]}" "${FUNCNAME[frame]}")"
  done
  printf '\nERROR: %s failed (exit status %s): %s%s\n' "${SCRIPT_NAME}" "${status}" "${command}" "${where}" >&2
  printf 'Nothing was rolled back. Fix the cause and re-run (the script is idempotent),\n' >&2
  printf 'or remove what was created with the matching down script.\n' >&2
}
set -Eeuo pipefail
trap 'on_err "$?" "${BASH_COMMAND}"' ERR

log() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
  printf 'ERROR: %s\n' "$*" >&2
  exit 1
}
# Bad command line: exit status 2, like most Unix tools.
usage_error() {
  printf '%s: %s\nRun %s --help for the options.\n' "${SCRIPT_NAME}" "$*" "${SCRIPT_NAME}" >&2
  exit 2
}

# --- running commands --------------------------------------------------------------------------------

# Quote one argument for display only if it needs it, so printed commands stay readable and copyable.
shell_quote() {
  local arg=$1
  if [[ -n "${arg}" && "${arg}" =~ ^[A-Za-z0-9_./:=@,+%-]+$ ]]; then
    printf '%s' "${arg}"
  else
    printf "'%s'" "${arg//\'/\'\\\'\'}"
  fi
}

format_command() {
  local out="" arg
  for arg in "$@"; do
    out+="$(shell_quote "${arg}") "
  done
  printf '%s' "${out% }"
}

# Run a command that changes something. With --dry-run only print it.
RUN_COMMAND=""
run() {
  RUN_COMMAND="$(format_command "$@")"
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '[dry-run] %s\n' "${RUN_COMMAND}"
    return 0
  fi
  printf '+ %s\n' "${RUN_COMMAND}"
  "$@"
}

# Run a read-only command used to decide what to do (does the cluster exist?). With --dry-run it is not
# run and reports failure, so a dry run shows every command a run from a clean slate would execute.
query() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    return 1
  fi
  "$@"
}

# try_step WHAT CMD...: run a step whose failure must not stop the script (gke/down must reach the cluster
# deletion even when a Kubernetes step times out): on failure warn, count it in STEP_FAILURES and go on.
STEP_FAILURES=0
try_step() {
  local what=$1 status=0
  shift
  run "$@" || status=$?
  if ((status != 0)); then
    warn "${what} failed (exit status ${status}); going on with the next step."
    STEP_FAILURES=$((STEP_FAILURES + 1))
  fi
  return 0
}

# Ask before spending money or deleting things; --yes answers for you. Never asks in a dry run.
confirm() {
  local question=$1 assume_yes=$2 answer
  if [[ "${DRY_RUN}" == 1 || "${assume_yes}" == 1 ]]; then
    return 0
  fi
  if [[ ! -t 0 ]]; then
    die "${question} Refusing to continue without a terminal to ask; pass --yes to confirm."
  fi
  read -r -p "${question} [y/N] " answer
  [[ "${answer}" =~ ^[Yy]([Ee][Ss])?$ ]] || die "Stopped; nothing was changed by this step."
}

# --- prerequisite checks -----------------------------------------------------------------------------

ok() { printf '  ok      %s\n' "$*"; }
fail() {
  printf '  MISSING %s\n' "$*"
  PREREQ_FAILURES=$((PREREQ_FAILURES + 1))
}
advise() { printf '  note    %s\n' "$*"; }

# version_ge A B: is version A >= version B? (leading "v" ignored)
version_ge() {
  local a=${1#v} b=${2#v}
  [[ "$(printf '%s\n%s\n' "${b}" "${a}" | sort -V | head -n 1)" == "${b}" ]]
}

# Extract the first x.y.z version number from a string.
first_version() {
  grep -Eo '[0-9]+\.[0-9]+(\.[0-9]+)?' <<<"$1" | head -n 1 || true
}

# check_tool NAME MIN_VERSION HINT -- VERSION_COMMAND...
check_tool() {
  local name=$1 min=$2 hint=$3 output version
  shift 4
  if ! command -v "${name}" >/dev/null 2>&1; then
    fail "${name}: not found on PATH. ${hint}"
    return 0
  fi
  output="$("$@" 2>/dev/null || true)"
  version="$(first_version "${output}")"
  if [[ -z "${version}" ]]; then
    fail "${name}: found, but \`$(format_command "$@")\` did not report a version. ${hint}"
  elif version_ge "${version}" "${min}"; then
    ok "${name} ${version} (>= ${min})"
  else
    fail "${name} ${version} is older than ${min}. ${hint}"
  fi
}

check_kubectl() {
  check_tool kubectl "${KUBECTL_MIN_VERSION}" \
    "Install kubectl ${KUBERNETES_VERSION}.x (the workshop venv ships one in .venv/bin)." \
    -- kubectl version --client -o json
  local version client_minor server_minor=${KUBERNETES_VERSION#*.}
  version="$(first_version "$(kubectl version --client -o json 2>/dev/null || true)")"
  client_minor=${version#*.}
  client_minor=${client_minor%%.*}
  if [[ "${client_minor}" =~ ^[0-9]+$ ]] && ((client_minor > server_minor + 1)); then
    advise "kubectl ${version} is more than one minor version ahead of Kubernetes ${KUBERNETES_VERSION}, outside"
    advise "the version skew policy. apply/wait work in practice; use kubectl ${KUBERNETES_VERSION}.x if anything misbehaves."
  fi
}

# --- the kind preflight: what the machine that runs Docker must offer, checked before anything is created ---

# One field of `docker info` (empty when Docker does not answer).
docker_info() {
  docker info --format "{{.$1}}" 2>/dev/null || true
}

# Docker's cgroup version, and the memory and CPUs it can give the kind node (the VM's under Docker Desktop).
check_docker_engine() {
  local cgroup mem_bytes cpus mem_gib
  command -v docker >/dev/null 2>&1 || return 0 # check_tool has reported it
  cgroup="$(docker_info CgroupVersion)"
  if [[ -z "${cgroup}" ]]; then
    fail "Docker engine: \`docker info\` does not answer. Start Docker (Docker Desktop, or: sudo systemctl start docker) and make sure your user may use it (docker info)."
    return 0
  fi
  if [[ "${cgroup}" == "${KIND_CGROUP_VERSION}" ]]; then
    ok "cgroup v${cgroup} (Docker)"
  else
    fail "cgroup v${cgroup}: Docker runs on cgroup v1, and the kubelet of Kubernetes ${KUBERNETES_VERSION} (the kind node image) refuses to start on it. Move the host to cgroup v2: on Linux boot with systemd.unified_cgroup_hierarchy=1 (the default of current distributions), on WSL2 add kernelCommandLine = cgroup_no_v1=all under [wsl2] in .wslconfig; current Docker Desktop uses cgroup v2."
  fi
  mem_bytes="$(docker_info MemTotal)"
  [[ "${mem_bytes}" =~ ^[0-9]+$ ]] || mem_bytes=0
  mem_gib="$(awk -v b="${mem_bytes}" 'BEGIN {printf "%.1f", b / 1073741824}')"
  # MemTotal reads a little below the memory configured (the kernel keeps some): allow 5%.
  if ((mem_bytes * 100 >= KIND_MIN_MEMORY_GB * 1073741824 * 95)); then
    ok "memory Docker can use: ${mem_gib} GiB (>= ${KIND_MIN_MEMORY_GB})"
  else
    fail "memory Docker can use: ${mem_gib} GiB; the workshop profile on kind needs >= ${KIND_MIN_MEMORY_GB} GiB (its requests add up to 9-11 GiB, cluster-setup/README.md \"Resources needed\"). Docker Desktop: Settings > Resources > Memory, then Apply & restart; on Linux Docker uses the machine's memory, so use a bigger machine (or GKE)."
  fi
  cpus="$(docker_info NCPU)"
  [[ "${cpus}" =~ ^[0-9]+$ ]] || cpus=0
  if ((cpus >= KIND_MIN_CPUS)); then
    ok "CPUs Docker can use: ${cpus} (>= ${KIND_MIN_CPUS})"
  else
    fail "CPUs Docker can use: ${cpus}; the workshop profile needs >= ${KIND_MIN_CPUS} (6 recommended). Docker Desktop: Settings > Resources > CPUs."
  fi
}

# Free memory right now (Linux): a warning only, since closing programs fixes it.
check_free_memory() {
  local avail_kb
  [[ "$(uname -s)" == Linux && -r /proc/meminfo ]] || return 0
  avail_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
  [[ "${avail_kb}" =~ ^[0-9]+$ ]] || return 0
  if ((avail_kb >= KIND_MIN_MEMORY_GB * 1048576)); then
    ok "free memory now: $((avail_kb / 1048576)) GiB"
  else
    advise "free memory now: $((avail_kb / 1048576)) GiB, below ${KIND_MIN_MEMORY_GB} GiB: close programs (browsers, IDEs) before a training run,"
    advise "or pods will be evicted or killed when memory runs out."
  fi
}

# inotify limits of the Linux kernel the kind node shares. INOTIFY_PROC_DIR is where they are read (tests).
check_inotify() {
  local file value wanted dir="${INOTIFY_PROC_DIR:-/proc/sys/fs/inotify}"
  if [[ "$(uname -s)" != Linux ]]; then
    advise "inotify limits: not Linux, skipped (Docker Desktop's VM has its own limits)."
    return 0
  fi
  for file in max_user_instances max_user_watches; do
    value="$(cat "${dir}/${file}" 2>/dev/null || true)"
    [[ "${value}" =~ ^[0-9]+$ ]] || value=0
    if [[ "${file}" == max_user_instances ]]; then
      wanted=${INOTIFY_MAX_USER_INSTANCES}
    else
      wanted=${INOTIFY_MAX_USER_WATCHES}
    fi
    if ((value >= wanted)); then
      ok "fs.inotify.${file} = ${value} (>= ${wanted})"
    else
      fail "fs.inotify.${file} = ${value}, Kubeflow needs >= ${wanted} (else pods fail with \"too many open files\"): sudo sysctl fs.inotify.${file}=${wanted} (and a line in /etc/sysctl.d/ to keep it after a reboot)"
    fi
  done
}

# Free disk where Docker keeps images and volumes.
check_disk() {
  local disk_dir disk_kb disk_gb
  disk_dir="$(docker_info DockerRootDir)"
  [[ -n "${disk_dir}" && -d "${disk_dir}" ]] || disk_dir=/
  disk_kb="$(df -Pk "${disk_dir}" 2>/dev/null | awk 'NR == 2 {print $4}')"
  disk_gb=$((${disk_kb:-0} / 1024 / 1024))
  if ((disk_gb >= KIND_MIN_DISK_GB)); then
    ok "free disk under ${disk_dir}: ${disk_gb} GB (>= ${KIND_MIN_DISK_GB})"
  else
    fail "free disk under ${disk_dir}: ${disk_gb} GB, images and volumes need >= ${KIND_MIN_DISK_GB} GB: free some (docker system prune) or give Docker Desktop a bigger disk."
  fi
}

# After the checks: stop if anything is missing, except in a dry run (report only).
finish_checks() {
  if ((PREREQ_FAILURES == 0)); then
    log "All prerequisites met."
  elif [[ "${DRY_RUN}" == 1 ]]; then
    warn "${PREREQ_FAILURES} prerequisite(s) missing; continuing only because this is a dry run."
  else
    die "${PREREQ_FAILURES} prerequisite(s) missing (see MISSING above); nothing was changed."
  fi
}

# --- the workshop profile ----------------------------------------------------------------------------

# kubectl wait for CRDs to be served, then for deployments to be Available. Never sleep.
wait_crds() {
  local context=$1
  shift
  run kubectl --context "${context}" wait --for condition=established --timeout=120s "$@"
}
wait_deployments() {
  local context=$1 namespace=$2
  shift 2
  run kubectl --context "${context}" -n "${namespace}" wait --for condition=Available \
    --timeout="${WAIT_TIMEOUT}" "$@"
}

# How often an upstream bundle is applied before giving up, and the first pause between attempts (doubling,
# at most 60 s). APPLY_BACKOFF_SECONDS=0 in the tests.
APPLY_ATTEMPTS=5
APPLY_BACKOFF_SECONDS="${APPLY_BACKOFF_SECONDS:-10}"

# The one pause in these scripts, between attempts of an apply that a webhook refused: bounded and doubling.
# Everything else waits on a condition (kubectl wait), never on the clock.
retry_pause() {
  sleep "$1"
}

# apply_upstream CTX NAMESPACES ARGS...: kubectl apply ARGS (the full bundle, on every run, so a re-run
# repairs a partial install). Upstream bundles ship CRDs together with resources of those CRDs, and
# resources that a fail-closed webhook which is only starting must admit (KServe's kserve.yaml), so an
# apply can fail until those are ready (kubeflow/manifests retries in a loop for the same reason). On a
# failure: wait until every CRD is established and the controllers in NAMESPACES are Available, pause
# (10, 20, 40, 60 s), apply again; at most APPLY_ATTEMPTS times.
apply_upstream() {
  local context=$1 namespaces=$2 namespace attempt pause=${APPLY_BACKOFF_SECONDS}
  shift 2
  for ((attempt = 1; attempt < APPLY_ATTEMPTS; attempt++)); do
    if run kubectl --context "${context}" apply "$@"; then
      return 0
    fi
    note "Attempt ${attempt} of ${APPLY_ATTEMPTS} failed: CRDs or webhooks of the bundle are not ready yet."
    note "Waiting for them, then ${pause} s, then applying the whole bundle again."
    run kubectl --context "${context}" wait --for condition=established --timeout=120s crd --all || true
    for namespace in ${namespaces}; do
      run kubectl --context "${context}" -n "${namespace}" wait --for condition=Available \
        --timeout="${WAIT_TIMEOUT}" deployment --all || true
    done
    retry_pause "${pause}"
    pause=$((pause * 2 > 60 ? 60 : pause * 2))
  done
  # The last attempt: if it fails too, the ERR trap names this apply and stops the script.
  run kubectl --context "${context}" apply "$@"
}

# Every bundle is applied server-side with --force-conflicts: the same command installs, upgrades and
# repairs (big CRDs fit, and fields another manager took over are taken back).
install_profile() {
  local context=$1
  local ssa=(--server-side --force-conflicts)
  log "cert-manager ${CERT_MANAGER_VERSION} (webhook certificates for KServe)"
  apply_upstream "${context}" cert-manager "${ssa[@]}" -f "${CERT_MANAGER_MANIFEST}"
  wait_crds "${context}" crd/certificates.cert-manager.io crd/issuers.cert-manager.io
  wait_deployments "${context}" cert-manager deployment/cert-manager deployment/cert-manager-cainjector \
    deployment/cert-manager-webhook

  log "Kubeflow Training Operator ${TRAINING_OPERATOR_VERSION} (TFJob)"
  apply_upstream "${context}" kubeflow "${ssa[@]}" -k "${TRAINING_OPERATOR_KUSTOMIZE}"
  wait_crds "${context}" crd/tfjobs.kubeflow.org
  wait_deployments "${context}" kubeflow deployment/training-operator

  log "Katib ${KATIB_VERSION} (hyperparameter tuning)"
  apply_upstream "${context}" kubeflow "${ssa[@]}" -k "${KATIB_KUSTOMIZE}"
  wait_crds "${context}" crd/experiments.kubeflow.org crd/trials.kubeflow.org crd/suggestions.kubeflow.org
  wait_deployments "${context}" kubeflow deployment/katib-controller deployment/katib-db-manager \
    deployment/katib-mysql deployment/katib-ui

  log "KServe ${KSERVE_VERSION}, raw deployment mode (no Istio, no Knative)"
  apply_upstream "${context}" "cert-manager kserve" "${ssa[@]}" -f "${KSERVE_MANIFEST}"
  wait_crds "${context}" crd/inferenceservices.serving.kserve.io
  wait_deployments "${context}" kserve deployment/kserve-controller-manager
  run kubectl --context "${context}" -n kserve patch configmap/inferenceservice-config --type merge \
    -p "{\"data\":{\"deploy\":\"{\\\"defaultDeploymentMode\\\":\\\"${KSERVE_DEFAULT_DEPLOYMENT_MODE}\\\"}\"}}"

  log "Kubeflow Pipelines ${KFP_VERSION}, standalone"
  apply_upstream "${context}" kubeflow "${ssa[@]}" -k "${KFP_CLUSTER_SCOPED_KUSTOMIZE}"
  wait_crds "${context}" crd/applications.app.k8s.io crd/workflows.argoproj.io
  apply_upstream "${context}" kubeflow "${ssa[@]}" -k "${KFP_PLATFORM_KUSTOMIZE}"
  wait_deployments "${context}" kubeflow deployment/ml-pipeline deployment/ml-pipeline-ui \
    deployment/workflow-controller
}

# --- the workshop image -------------------------------------------------------------------------------------

# cluster-setup/image (another script) builds the workshop image once and makes it available to the cluster:
# `kind load` on kind, Cloud Build into the Artifact Registry repository on GKE. ARGS: --target kind|gke
# [--project ID] [--region R]; --dry-run is passed through, so a dry run shows its commands too.
# WORKSHOP_IMAGE_SCRIPT replaces its path (the tests use a stub).
image_script() {
  printf '%s' "${WORKSHOP_IMAGE_SCRIPT:-${CLUSTER_SETUP_DIR}/image}"
}

check_image_script() {
  if [[ -x "$(image_script)" ]]; then
    ok "cluster-setup/image (builds the workshop image and makes it available to the cluster)"
  else
    fail "cluster-setup/image: not found or not executable at $(image_script). Pass --skip-image and build the image yourself (cluster-setup/README.md)."
  fi
}

build_workshop_image() {
  local script
  script="$(image_script)"
  log "The workshop image, built once and made available to the cluster (cluster-setup/image $*)"
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '[dry-run] %s\n' "$(format_command "${script}" "$@")"
    # Its own dry run shows its commands; like a missing prerequisite, its failure does not stop ours.
    if ! "${script}" "$@" --dry-run; then
      warn "cluster-setup/image $* --dry-run failed (see above); continuing only because this is a dry run."
    fi
  else
    run "${script}" "$@"
  fi
}

# --- the workshop's Secrets --------------------------------------------------------------------------

# 32 random bytes as 64 hex characters, from the kernel's random source (od is POSIX; no openssl needed).
random_hex() {
  od -An -N32 -tx1 /dev/urandom | tr -d ' \n'
}

# ensure_secret CTX NAME KEY=VALUE...: create the generic Secret NAME in the workshop namespace unless it
# exists. An existing Secret is kept as it is: a new database password would lock the API out of the data
# PostgreSQL already holds. The values reach kubectl on its standard input (--from-env-file=/dev/stdin),
# never on a command line (where ps shows them to every user) nor on the screen.
ensure_secret() {
  local context=$1 name=$2
  shift 2
  if query kubectl --context "${context}" -n "${WORKSHOP_NAMESPACE}" get secret "${name}" >/dev/null 2>&1; then
    note "Secret ${name} already exists; keeping it."
    return 0
  fi
  run kubectl --context "${context}" -n "${WORKSHOP_NAMESPACE}" create secret generic "${name}" \
    --from-env-file=/dev/stdin <<<"$(printf '%s\n' "$@")"
}

# The admin token again, as Secret recsys-admin in namespace kubeflow: Kubeflow Pipelines standalone runs every
# pipeline pod there, and the pipeline's compare and push steps read the token (RECSYS_ADMIN_TOKEN) to call the
# model server's admin API (a pod can only read Secrets of its own namespace). Always the workshop namespace's
# token: created when missing, replaced when it differs (the workshop's Secret was re-created), kept otherwise.
# The value goes from one kubectl to the other through this shell's variables and stdin, never on a command line.
copy_admin_secret() {
  local context=$1 token_b64="" copy=""
  if [[ "${DRY_RUN}" == 1 ]]; then
    run kubectl --context "${context}" -n "${KFP_NAMESPACE}" create secret generic recsys-admin \
      --from-env-file=/dev/stdin
    return 0
  fi
  token_b64="$(kubectl --context "${context}" -n "${WORKSHOP_NAMESPACE}" get secret recsys-admin \
    -o 'jsonpath={.data.token}')"
  [[ -n "${token_b64}" ]] || die "Secret recsys-admin in namespace ${WORKSHOP_NAMESPACE} has no key token."
  if copy="$(kubectl --context "${context}" -n "${KFP_NAMESPACE}" get secret recsys-admin \
    -o 'jsonpath={.data.token}' 2>/dev/null)"; then
    if [[ "${copy}" == "${token_b64}" ]]; then
      note "Secret recsys-admin in ${KFP_NAMESPACE} already holds the admin token; keeping it."
      return 0
    fi
    note "Secret recsys-admin in ${KFP_NAMESPACE} holds another token; replacing it."
    run kubectl --context "${context}" -n "${KFP_NAMESPACE}" delete secret recsys-admin
  fi
  run kubectl --context "${context}" -n "${KFP_NAMESPACE}" create secret generic recsys-admin \
    --from-env-file=/dev/stdin <<<"token=$(base64 --decode <<<"${token_b64}")"
}

# The credentials the workshop's pods read (cluster-setup/manifests): the admin token (model server and
# API), the API's signing key, PostgreSQL's password and the database URL the API connects with. Generated
# on the first run and kept afterwards; they exist in the cluster only, never in the repository.
create_workshop_secrets() {
  local context=$1 token=GENERATED signing_key=GENERATED password=GENERATED
  log "Workshop namespace ${WORKSHOP_NAMESPACE} and its Secrets (random values, created only where missing)"
  run kubectl --context "${context}" apply -f "${CLUSTER_SETUP_DIR}/manifests/base/namespace.yaml"
  if [[ "${DRY_RUN}" == 1 ]]; then
    note "Each value: 32 random bytes (hex), given to kubectl on its standard input, never printed."
  else
    token="$(random_hex)"
    signing_key="$(random_hex)"
    password="$(random_hex)"
  fi
  ensure_secret "${context}" recsys-admin "token=${token}"
  ensure_secret "${context}" recsys-api "signing-key=${signing_key}"
  ensure_secret "${context}" recsys-postgres "password=${password}" \
    "database-url=postgresql+psycopg://recsys:${password}@recsys-postgres:5432/recsys"
  copy_admin_secret "${context}"
  note "The admin token (for the model server's and the API's admin calls):"
  note "  kubectl --context ${context} -n ${WORKSHOP_NAMESPACE} get secret recsys-admin -o jsonpath='{.data.token}' | base64 --decode"
}

# The JupyterHub release: chart pinned in versions.env; VALUES... are -f files, in order. First the attendees'
# ClusterRole and the hub's rights (jupyterhub/attendees-rbac.yaml: cluster-scoped and `default` objects only),
# then the chart with the hub's pre-spawn hook (jupyterhub/attendees.py) that prepares each attendee's namespace.
install_jupyterhub() {
  local context=$1
  shift
  local args=() values
  for values in "$@"; do
    args+=(--values "${values}")
  done
  log "JupyterHub (Zero to JupyterHub chart ${JUPYTERHUB_CHART_VERSION}) in namespace ${JUPYTERHUB_NAMESPACE}"
  run kubectl --context "${context}" apply -f "${CLUSTER_SETUP_DIR}/jupyterhub/attendees-rbac.yaml"
  run helm upgrade --install jupyterhub jupyterhub --repo "${JUPYTERHUB_CHART_REPO}" \
    --version "${JUPYTERHUB_CHART_VERSION}" --kube-context "${context}" \
    --namespace "${JUPYTERHUB_NAMESPACE}" --create-namespace "${args[@]}" \
    --set-file "hub.extraConfig.recsysAttendees=${CLUSTER_SETUP_DIR}/jupyterhub/attendees.py" --wait --timeout 15m
}

print_versions() {
  log "Workshop profile pinned in cluster-setup/versions.env (Kubeflow manifests ${KUBEFLOW_MANIFESTS_RELEASE}):"
  note "cert-manager ${CERT_MANAGER_VERSION}, Training Operator ${TRAINING_OPERATOR_VERSION}, Katib ${KATIB_VERSION},"
  note "KServe ${KSERVE_VERSION} (raw deployment), Kubeflow Pipelines ${KFP_VERSION}, Kubernetes ${KUBERNETES_VERSION}"
}
