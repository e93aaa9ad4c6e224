# shellcheck shell=bash source-path=SCRIPTDIR
# Shared helpers of cluster-setup/{kind,gke}/{up,down}. Source it; do not run it.
#
#   run CMD ARGS...         print the command, then run it (with --dry-run: only print it)
#   query CMD ARGS...       run a read-only command that only inspects state (skipped with --dry-run)
#   check_tool, check_kubectl, check_inotify, check_host_resources, then finish_checks:
#                           prerequisite checks that report every failure, then stop (not in a dry run)
#   install_profile CTX     the workshop profile: cert-manager, Training Operator, Katib, KServe, KFP
#   create_workshop_secrets CTX        the workshop namespace and its Secrets (random values, only if missing)
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

check_inotify() {
  local file value wanted
  if [[ "$(uname -s)" != Linux ]]; then
    advise "inotify limits: not Linux, skipped (Docker Desktop's VM has its own limits)."
    return 0
  fi
  for file in max_user_instances max_user_watches; do
    value="$(sysctl -n "fs.inotify.${file}" 2>/dev/null || cat "/proc/sys/fs/inotify/${file}" 2>/dev/null || echo 0)"
    if [[ "${file}" == max_user_instances ]]; then
      wanted=${INOTIFY_MAX_USER_INSTANCES}
    else
      wanted=${INOTIFY_MAX_USER_WATCHES}
    fi
    if ((value >= wanted)); then
      ok "fs.inotify.${file} = ${value} (>= ${wanted})"
    else
      fail "fs.inotify.${file} = ${value}, Kubeflow needs >= ${wanted}: sudo sysctl fs.inotify.${file}=${wanted}"
    fi
  done
}

# Free CPU, memory and disk on the machine that runs the kind node containers.
check_host_resources() {
  local cpus mem_kb mem_gb disk_dir disk_kb disk_gb
  if [[ -r /proc/meminfo ]]; then
    cpus="$(nproc 2>/dev/null || echo 0)"
    mem_kb="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
  else
    cpus="$(docker info --format '{{.NCPU}}' 2>/dev/null || echo 0)"
    mem_kb=$(($(docker info --format '{{.MemTotal}}' 2>/dev/null || echo 0) / 1024))
  fi
  mem_gb=$((${mem_kb:-0} / 1024 / 1024))
  if ((cpus >= KIND_MIN_CPUS)); then
    ok "CPUs: ${cpus} (>= ${KIND_MIN_CPUS})"
  else
    fail "CPUs: ${cpus}, the workshop profile needs >= ${KIND_MIN_CPUS} (6 recommended)."
  fi
  if ((mem_gb >= KIND_MIN_MEMORY_GB)); then
    ok "free memory: ${mem_gb} GB (>= ${KIND_MIN_MEMORY_GB})"
  else
    fail "free memory: ${mem_gb} GB, the workshop profile needs >= ${KIND_MIN_MEMORY_GB} GB (12 recommended)."
  fi
  disk_dir="$(docker info --format '{{.DockerRootDir}}' 2>/dev/null || true)"
  [[ -d "${disk_dir}" ]] || disk_dir=/
  disk_kb="$(df -Pk "${disk_dir}" 2>/dev/null | awk 'NR == 2 {print $4}')"
  disk_gb=$((${disk_kb:-0} / 1024 / 1024))
  if ((disk_gb >= KIND_MIN_DISK_GB)); then
    ok "free disk under ${disk_dir}: ${disk_gb} GB (>= ${KIND_MIN_DISK_GB})"
  else
    fail "free disk under ${disk_dir}: ${disk_gb} GB, images and volumes need >= ${KIND_MIN_DISK_GB} GB."
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

# Upstream bundles ship CRDs together with resources of those CRDs, or with resources that a webhook
# which is only starting must admit, so a first apply can race them (kubeflow/manifests retries in a
# loop for the same reason). Apply; if that fails, wait until every CRD is established and the
# controllers in NAMESPACES are Available, then apply once more. Waiting on conditions, never sleeping.
apply_upstream() {
  local context=$1 namespaces=$2 namespace
  shift 2
  if [[ "${DRY_RUN}" == 1 ]]; then
    run kubectl --context "${context}" apply "$@"
    return 0
  fi
  if run kubectl --context "${context}" apply "$@"; then
    return 0
  fi
  note "The first apply raced its own CRDs or webhooks; waiting for them, then applying once more."
  run kubectl --context "${context}" wait --for condition=established --timeout=120s crd --all
  for namespace in ${namespaces}; do
    run kubectl --context "${context}" -n "${namespace}" wait --for condition=Available \
      --timeout="${WAIT_TIMEOUT}" deployment --all
  done
  run kubectl --context "${context}" apply "$@"
}

# Image tag of the KServe controller, or nothing if KServe is not installed.
installed_kserve_image() {
  query kubectl --context "$1" -n kserve get deployment kserve-controller-manager \
    -o 'jsonpath={.spec.template.spec.containers[?(@.name=="manager")].image}' 2>/dev/null || true
}

install_profile() {
  local context=$1
  log "cert-manager ${CERT_MANAGER_VERSION} (webhook certificates for KServe)"
  apply_upstream "${context}" cert-manager -f "${CERT_MANAGER_MANIFEST}"
  wait_crds "${context}" crd/certificates.cert-manager.io crd/issuers.cert-manager.io
  wait_deployments "${context}" cert-manager deployment/cert-manager deployment/cert-manager-cainjector \
    deployment/cert-manager-webhook

  log "Kubeflow Training Operator ${TRAINING_OPERATOR_VERSION} (TFJob)"
  apply_upstream "${context}" kubeflow --server-side -k "${TRAINING_OPERATOR_KUSTOMIZE}"
  wait_crds "${context}" crd/tfjobs.kubeflow.org
  wait_deployments "${context}" kubeflow deployment/training-operator

  log "Katib ${KATIB_VERSION} (hyperparameter tuning)"
  apply_upstream "${context}" kubeflow -k "${KATIB_KUSTOMIZE}"
  wait_crds "${context}" crd/experiments.kubeflow.org crd/trials.kubeflow.org crd/suggestions.kubeflow.org
  wait_deployments "${context}" kubeflow deployment/katib-controller deployment/katib-db-manager \
    deployment/katib-mysql deployment/katib-ui

  log "KServe ${KSERVE_VERSION}, raw deployment mode (no Istio, no Knative)"
  if [[ "$(installed_kserve_image "${context}")" == *":${KSERVE_VERSION}" ]]; then
    note "KServe ${KSERVE_VERSION} is already installed; not re-applying it."
  else
    apply_upstream "${context}" "cert-manager kserve" --server-side --force-conflicts -f "${KSERVE_MANIFEST}"
  fi
  wait_crds "${context}" crd/inferenceservices.serving.kserve.io
  wait_deployments "${context}" kserve deployment/kserve-controller-manager
  run kubectl --context "${context}" -n kserve patch configmap/inferenceservice-config --type merge \
    -p "{\"data\":{\"deploy\":\"{\\\"defaultDeploymentMode\\\":\\\"${KSERVE_DEFAULT_DEPLOYMENT_MODE}\\\"}\"}}"

  log "Kubeflow Pipelines ${KFP_VERSION}, standalone"
  apply_upstream "${context}" kubeflow -k "${KFP_CLUSTER_SCOPED_KUSTOMIZE}"
  wait_crds "${context}" crd/applications.app.k8s.io crd/workflows.argoproj.io
  apply_upstream "${context}" kubeflow -k "${KFP_PLATFORM_KUSTOMIZE}"
  wait_deployments "${context}" kubeflow deployment/ml-pipeline deployment/ml-pipeline-ui \
    deployment/workflow-controller
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
  note "The admin token (for the model server's and the API's admin calls):"
  note "  kubectl --context ${context} -n ${WORKSHOP_NAMESPACE} get secret recsys-admin -o jsonpath='{.data.token}' | base64 --decode"
}

# The JupyterHub release: chart pinned in versions.env; VALUES... are -f files, in order.
install_jupyterhub() {
  local context=$1
  shift
  local args=() values
  for values in "$@"; do
    args+=(--values "${values}")
  done
  log "JupyterHub (Zero to JupyterHub chart ${JUPYTERHUB_CHART_VERSION}) in namespace ${JUPYTERHUB_NAMESPACE}"
  run helm upgrade --install jupyterhub jupyterhub --repo "${JUPYTERHUB_CHART_REPO}" \
    --version "${JUPYTERHUB_CHART_VERSION}" --kube-context "${context}" \
    --namespace "${JUPYTERHUB_NAMESPACE}" --create-namespace "${args[@]}" --wait --timeout 15m
}

print_versions() {
  log "Workshop profile pinned in cluster-setup/versions.env (Kubeflow manifests ${KUBEFLOW_MANIFESTS_RELEASE}):"
  note "cert-manager ${CERT_MANAGER_VERSION}, Training Operator ${TRAINING_OPERATOR_VERSION}, Katib ${KATIB_VERSION},"
  note "KServe ${KSERVE_VERSION} (raw deployment), Kubeflow Pipelines ${KFP_VERSION}, Kubernetes ${KUBERNETES_VERSION}"
}
