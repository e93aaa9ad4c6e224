# shellcheck shell=bash
# Step 3 of cluster-setup/smoke (sourced by it): the API answers GET /recommendations/{user} from the model.
set -Eeuo pipefail

step_api() {
  step "3/6 api" "GET /recommendations/${SMOKE_USER_ID} through the API Service"
  if ! run "${KUBECTL[@]}" rollout status statefulset/recsys-postgres --timeout="${TIMEOUT}s"; then
    fail_step "PostgreSQL did not become ready within ${TIMEOUT} s." statefulset/recsys-postgres
  fi
  wait_ready "the API" deployment/recsys-api --for=condition=Available
  port_forward "${NAMESPACE}" svc/recsys-api 80
  http GET "http://127.0.0.1:${PF_PORT}/readyz"
  expect_status 200 "the API's readiness" deployment/recsys-api
  http GET "http://127.0.0.1:${PF_PORT}/recommendations/${SMOKE_USER_ID}?k=10"
  expect_status 200 "recommendations" deployment/recsys-api
  [[ "${DRY_RUN}" == 0 ]] || return 0
  [[ "$(json 'len(d["items"])')" == 10 ]] ||
    fail_step "expected 10 recommendations: ${HTTP_BODY:0:400}" deployment/recsys-api
  [[ "$(json 'd["source"]')" == model ]] ||
    fail_step "the API answered from its fallback, not through the model server: $(json 'd.get("fallback_reason")')" \
      deployment/recsys-api "inferenceservice/${ISVC}"
  note "The API answered from model version $(json 'd.get("model_version")')."
}
