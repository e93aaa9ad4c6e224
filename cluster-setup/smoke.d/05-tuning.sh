# shellcheck shell=bash
# Step 5 of cluster-setup/smoke (sourced by it): Katib Experiment recsys-tune runs its trials to success.
set -Eeuo pipefail

step_tuning() {
  local succeeded
  step "5/6 tuning" "Katib Experiment ${EXPERIMENT} with ${TUNING_TRIALS} trials"
  run "${KUBECTL[@]}" delete experiment "${EXPERIMENT}" --ignore-not-found --wait=true --timeout=120s
  run "${KUBECTL[@]}" apply -f "${OUT}/workshop.yaml" -l app.kubernetes.io/component=tuning
  await_condition "experiment/${EXPERIMENT}" Succeeded Failed "the tuning experiment"
  read_value succeeded "${KUBECTL[@]}" get "experiment/${EXPERIMENT}" -o 'jsonpath={.status.trialsSucceeded}'
  [[ "${DRY_RUN}" == 0 ]] || return 0
  ((${succeeded:-0} >= TUNING_TRIALS)) ||
    fail_step "the experiment succeeded with ${succeeded:-0} successful trials, expected ${TUNING_TRIALS}." \
      "experiment/${EXPERIMENT}"
  note "${succeeded} trials succeeded; best: $("${KUBECTL[@]}" get "experiment/${EXPERIMENT}" \
    -o 'jsonpath={.status.currentOptimalTrial.observation.metrics[0]}' 2>/dev/null || true)"
}

# Submit the compiled pipeline the way lab 09 does (pipelines.cluster_arguments: deployed_dir is the model
# server's URL, after checking that the run's namespace holds the admin token's Secret), then wait for the run. Given to Python on its standard input:
