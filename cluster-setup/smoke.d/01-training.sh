# shellcheck shell=bash
# Step 1 of cluster-setup/smoke (sourced by it): TFJob recsys-train with a chief and a worker trains, exports,
# and both replicas end with the same weights.
set -Eeuo pipefail

step_training() {
  local chief_log worker_log chief_digest worker_digest
  step "1/6 training" "TFJob ${TRAIN_JOB} with two replicas (chief + worker), ${TRAIN_EPOCHS} epoch"
  run "${KUBECTL[@]}" delete tfjob "${TRAIN_JOB}" --ignore-not-found --wait=true --timeout=120s
  run "${KUBECTL[@]}" apply -f "${OUT}/workshop.yaml" -l 'app.kubernetes.io/component!=tuning'
  await_condition "tfjob/${TRAIN_JOB}" Succeeded Failed "the training job"
  # The job succeeds when the chief does; the worker ends with it.
  wait_ready "the worker" "pod/${TRAIN_JOB}-worker-0" --for=jsonpath='{.status.phase}'=Succeeded
  read_value chief_log "${KUBECTL[@]}" logs "pod/${TRAIN_JOB}-chief-0" -c tensorflow
  read_value worker_log "${KUBECTL[@]}" logs "pod/${TRAIN_JOB}-worker-0" -c tensorflow
  [[ "${DRY_RUN}" == 0 ]] || return 0
  grep -q ' 2 replica(s)' <<<"${chief_log}" ||
    fail_step "the chief did not train with 2 replicas (no '2 replica(s)' in its log)." "tfjob/${TRAIN_JOB}"
  grep -q '^exported ' <<<"${chief_log}" ||
    fail_step "the chief exported no model (no 'exported <path>' line in its log)." "tfjob/${TRAIN_JOB}"
  chief_digest="$(sed -n 's/^weights_sha256=//p' <<<"${chief_log}" | tail -n 1)"
  worker_digest="$(sed -n 's/^weights_sha256=//p' <<<"${worker_log}" | tail -n 1)"
  if [[ -z "${chief_digest}" || "${chief_digest}" != "${worker_digest}" ]]; then
    fail_step "chief and worker ended with different weights (${chief_digest:-none} vs ${worker_digest:-none})." \
      "tfjob/${TRAIN_JOB}"
  fi
  note "Both replicas ended with the same weights (sha256 ${chief_digest:0:12}...); $(grep '^exported ' <<<"${chief_log}" | tail -n 1)."
}

# The admin token, read from the Secret, never printed.
