# shellcheck shell=bash
# The helpers of cluster-setup/smoke and its steps (smoke.d/*.sh); source after common.sh. Settings (NAMESPACE,
# KUBECTL, TIMEOUT, OUT, ...) are the driver's.
#
#   step LABEL WHAT, fail_step MESSAGE OBJECT...   start a step; fail it (the EXIT trap prints the diagnostics)
#   await_condition, wait_ready                    bounded waits on a resource's condition (kubectl wait)
#   read_value VAR CMD..., run_quiet CMD...        a read-only command's output; a command with a noisy output
#   port_forward NS TARGET PORT, stop_port_forwards   kubectl port-forward on a free local port (PF_PORT)
#   http METHOD URL OPTS..., expect_status CODE WHAT, json EXPR   one request; its status; its JSON body
#   admin_token, admin_http METHOD URL OPTS...    the admin token from its Secret; a request that carries it
#   dump_kfp_on_failure 0|1                        a failure also dumps the Kubeflow Pipelines side (or not)
#   on_exit                                        the EXIT trap: stop the port-forwards, dump the diagnostics
set -Eeuo pipefail

# --- helpers -------------------------------------------------------------------------------------------------

# Like run, for commands whose standard output is noise (write-config prints the config it wrote).
run_quiet() {
  RUN_COMMAND="$(format_command "$@")"
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '[dry-run] %s\n' "${RUN_COMMAND}"
    return 0
  fi
  printf '+ %s\n' "${RUN_COMMAND}"
  "$@" >/dev/null
}

# step LABEL DESCRIPTION: start the next step (and note how long the previous one took).
step() {
  finish_step
  STEP=$1
  STEP_STARTED=${SECONDS}
  log "Step ${STEP}: $2"
}

finish_step() {
  if [[ -n "${STEP}" ]]; then
    STEP_TIMES+=("$(printf '%5d s  %s' $((SECONDS - STEP_STARTED)) "${STEP}")")
  fi
}

# A step's check failed: say what and why, remember which objects to describe, and stop (the EXIT trap
# prints the diagnostics).
fail_step() {
  local message=$1
  shift
  FAILING+=("$@")
  printf '\nSMOKE TEST FAILED at step %s: %s\n' "${STEP}" "${message}" >&2
  exit 1
}

# await_condition RESOURCE SUCCESS FAILURE WHAT: wait until RESOURCE has condition SUCCESS, for at most
# --timeout seconds; stop early when it reports FAILURE. kubectl wait blocks 30 s at a time, so a failed job
# is noticed within 30 s without sleeping.
await_condition() {
  local resource=$1 success=$2 failure=$3 what=$4 deadline=$((SECONDS + TIMEOUT)) state
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '[dry-run] %s   # repeated for up to %s s; stops on condition %s\n' \
      "$(format_command "${KUBECTL[@]}" wait "${resource}" --for="condition=${success}" --timeout=30s)" "${TIMEOUT}" "${failure}"
    return 0
  fi
  note "Waiting up to ${TIMEOUT} s for ${resource} to be ${success} (stops early if it is ${failure})."
  until "${KUBECTL[@]}" wait "${resource}" --for="condition=${success}" --timeout=30s >/dev/null 2>&1; do
    "${KUBECTL[@]}" get "${resource}" >/dev/null 2>&1 || fail_step "${what}: ${resource} does not exist." "${resource}"
    state="$("${KUBECTL[@]}" get "${resource}" \
      -o "jsonpath={.status.conditions[?(@.type==\"${failure}\")].status}" 2>/dev/null || true)"
    if [[ "${state}" == True ]]; then
      fail_step "${what}: ${resource} reports condition ${failure}." "${resource}"
    fi
    if ((SECONDS >= deadline)); then
      fail_step "${what}: ${resource} was not ${success} within ${TIMEOUT} s." "${resource}"
    fi
  done
  note "${resource} is ${success}."
}

# wait_ready WHAT RESOURCE KUBECTL-WAIT-ARGS...: a plain kubectl wait, bounded by --timeout.
wait_ready() {
  local what=$1 resource=$2
  shift 2
  if ! run "${KUBECTL[@]}" wait "${resource}" "$@" --timeout="${TIMEOUT}s"; then
    fail_step "${what}: ${resource} did not get there within ${TIMEOUT} s." "${resource}"
  fi
}

# read_value VARIABLE COMMAND...: run a read-only command and keep its output (in a dry run: only print it).
read_value() {
  local variable=$1
  shift
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '[dry-run] %s\n' "$(format_command "$@")"
    printf -v "${variable}" '%s' ""
    return 0
  fi
  printf '+ %s\n' "$(format_command "$@")"
  local value
  value="$("$@")" || fail_step "$(format_command "$@") failed."
  printf -v "${variable}" '%s' "${value}"
}

free_port() {
  "${PYTHON}" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_forward NAMESPACE TARGET REMOTE_PORT: kubectl port-forward in the background on a free loopback port
# (PF_PORT), waited for with curl's own retries (any HTTP answer means the tunnel is up).
port_forward() {
  local target_ns=$1 target=$2 remote=$3 log
  if [[ "${DRY_RUN}" == 1 ]]; then
    PF_PORT=LOCAL_PORT
    printf '[dry-run] %s &\n' "$(format_command kubectl --context "${CONTEXT}" -n "${target_ns}" port-forward \
      --address 127.0.0.1 "${target}" "${PF_PORT}:${remote}")"
    return 0
  fi
  PF_PORT="$(free_port)"
  log="${OUT}/port-forward-${target//\//-}.log"
  printf '+ %s &\n' "$(format_command kubectl --context "${CONTEXT}" -n "${target_ns}" port-forward \
    --address 127.0.0.1 "${target}" "${PF_PORT}:${remote}")"
  kubectl --context "${CONTEXT}" -n "${target_ns}" port-forward --address 127.0.0.1 "${target}" \
    "${PF_PORT}:${remote}" >"${log}" 2>&1 &
  PF_PIDS+=("$!")
  if ! curl -s -o /dev/null --max-time 5 --retry 20 --retry-delay 1 --retry-connrefused \
    "http://127.0.0.1:${PF_PORT}/"; then
    cat "${log}" >&2 || true
    fail_step "kubectl port-forward to ${target_ns}/${target} did not come up within 20 s." "${target}"
  fi
}

stop_port_forwards() {
  local pid
  for pid in ${PF_PIDS[@]+"${PF_PIDS[@]}"}; do
    kill "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
  done
  PF_PIDS=()
}

# http METHOD URL [CURL-OPTIONS...]: one request; the answer's status in HTTP_STATUS, its body in HTTP_BODY.
# Options come before the URL; a header holding the admin token goes through `--config -` (standard
# input), so the token is never printed nor on a command line.
http() {
  local method=$1 url=$2 answer
  shift 2
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '[dry-run] %s\n' "$(format_command curl -sS -X "${method}" "$@" "${url}")"
    HTTP_STATUS="" HTTP_BODY=""
    return 0
  fi
  printf '+ %s\n' "$(format_command curl -sS -X "${method}" "$@" "${url}")"
  answer="$(curl -sS --max-time 30 -X "${method}" -w '\n%{http_code}' "$@" "${url}")" ||
    fail_step "${method} ${url}: no answer (curl failed)."
  HTTP_STATUS="${answer##*$'\n'}"
  HTTP_BODY="${answer%$'\n'*}"
}

expect_status() {
  local wanted=$1 what=$2
  [[ "${DRY_RUN}" == 1 || "${HTTP_STATUS}" == "${wanted}" ]] ||
    fail_step "${what}: expected HTTP ${wanted}, got ${HTTP_STATUS}: ${HTTP_BODY:0:400}" "${@:3}"
}

# json EXPRESSION: a Python expression over the last answer's JSON body (named d), printed. Used inside
# $(...), so it reports a body it cannot read and returns non-zero rather than calling fail_step.
json() {
  "${PYTHON}" -c 'import json, sys; d = json.loads(sys.stdin.read()); print(eval(sys.argv[1]))' "$1" \
    <<<"${HTTP_BODY}" 2>/dev/null && return 0
  printf 'not the JSON expected (%s): %s\n' "$1" "${HTTP_BODY:0:400}" >&2
  return 1
}

# Every image the rendered workshop manifests or a compiled pipeline name (kustomize and KFP write one
# `image:` per container, unquoted).
images_in() {
  sed -n 's/^[[:space:]-]*image:[[:space:]]*//p' "$1" | tr -d "\"'" | sort -u
}

# The admin token, read from the Secret into ADMIN_TOKEN, never printed.
admin_token() {
  local encoded
  read_value encoded "${KUBECTL[@]}" get secret recsys-admin -o 'jsonpath={.data.token}'
  [[ "${DRY_RUN}" == 1 ]] && return 0
  [[ -n "${encoded}" ]] || fail_step "Secret recsys-admin has no key token." "secret/recsys-admin"
  ADMIN_TOKEN="$(base64 --decode <<<"${encoded}")"
}

# admin_http METHOD URL [CURL-OPTIONS...]: http with the admin token's header, given to curl on its standard
# input (`--config -`), so the token is on no command line and never printed.
admin_http() {
  http "$@" --config - <<<"header = \"Authorization: Bearer ${ADMIN_TOKEN:-}\""
}

# dump_kfp_on_failure 0|1: whether a failure also dumps the pipeline's side (its pods in the Kubeflow namespace).
dump_kfp_on_failure() {
  FAILING_KFP=$1
}

# --- failure diagnostics -------------------------------------------------------------------------------------

dump_diagnostics() {
  local object pod k=("${KUBECTL[@]}")
  trap - ERR
  set +e
  printf '\n==> Diagnostics (namespace %s, context %s)\n' "${NAMESPACE}" "${CONTEXT}"
  log "Events, oldest first"
  "${k[@]}" get events --sort-by=.lastTimestamp
  log "Workshop resources"
  "${k[@]}" get all,pvc,configmaps,tfjobs,experiments,trials,inferenceservices -o wide
  for object in ${FAILING[@]+"${FAILING[@]}"}; do
    if [[ "${object}" == */*/* ]]; then # NAMESPACE/kind/name: an object outside the workshop's namespace
      log "kubectl describe ${object#*/} (namespace ${object%%/*})"
      kubectl --context "${CONTEXT}" -n "${object%%/*}" describe "${object#*/}"
    else
      log "kubectl describe ${object}"
      "${k[@]}" describe "${object}"
    fi
  done
  for pod in $("${k[@]}" get pods -o name 2>/dev/null); do
    log "kubectl describe ${pod}"
    "${k[@]}" describe "${pod}" | sed -n '/^Events:/,$p'
    log "Logs of ${pod} (last 200 lines of each container; the previous run's too, if it restarted)"
    "${k[@]}" logs "${pod}" --all-containers --prefix --tail=200
    "${k[@]}" logs "${pod}" --all-containers --prefix --tail=50 --previous 2>/dev/null
  done
  if ((FAILING_KFP)); then
    k=(kubectl --context "${CONTEXT}" -n "${KFP_NAMESPACE}")
    log "Kubeflow Pipelines: events, workflows and the pipeline's pods in ${KFP_NAMESPACE}"
    "${k[@]}" get events --sort-by=.lastTimestamp | tail -n 60
    "${k[@]}" get workflows.argoproj.io -o wide
    for pod in $("${k[@]}" get pods -o name 2>/dev/null | grep -E "/${PIPELINE_NAME}-"); do
      log "${pod} (namespace ${KFP_NAMESPACE})"
      "${k[@]}" describe "${pod}" | sed -n '/^Events:/,$p'
      "${k[@]}" logs "${pod}" --all-containers --prefix --tail=100
    done
    "${k[@]}" logs deployment/ml-pipeline --tail=100
  fi
  log "Nodes"
  kubectl --context "${CONTEXT}" describe nodes | sed -n '/^Allocated resources:/,/^Events:/p'
}

on_exit() {
  local status=$?
  stop_port_forwards
  if ((status != 0 && STARTED && !DRY_RUN)); then
    dump_diagnostics
  fi
  exit "${status}"
}

