# shellcheck shell=bash
# Step 4 of cluster-setup/smoke (sourced by it): a short Locust run through the API's port-forward of step 3
# meets the smoke SLO.
set -Eeuo pipefail

step_load() {
  local status=0
  step "4/6 load" "${LOAD_SECONDS} s of Locust against the API, SLO p95 < ${SMOKE_P95_MS} ms, errors < ${SMOKE_MAX_ERROR_RATE}"
  # The API's port-forward of step 3 is still open (PF_PORT).
  run env RECSYS_LOCUST_FEEDBACK_PROB=0.05 "${PYTHON}" -m recsys_workshop.loadtest run \
    --host "http://127.0.0.1:${PF_PORT}" --users "${LOAD_USERS}" --run-time "${LOAD_SECONDS}" \
    --weights home=1,recommend=10,new_user=0 --p95-ms "${SMOKE_P95_MS}" --max-error-rate "${SMOKE_MAX_ERROR_RATE}" \
    --out "${OUT}/loadtest/smoke" || status=$?
  stop_port_forwards
  case "${status}" in
    0) ;;
    1) fail_step "the load test missed the SLO (verdict above; CSVs and charts in ${OUT#"${REPO_ROOT}/"}/loadtest)." \
      deployment/recsys-api "inferenceservice/${ISVC}" ;;
    *) fail_step "Locust did not run (exit status ${status})." deployment/recsys-api ;;
  esac
}
