# shellcheck shell=bash
# Step 2 of cluster-setup/smoke (sourced by it): InferenceService recsys-model is Ready, answers a predict call,
# and its admin routes refuse a call without the admin token and accept one with it.
set -Eeuo pipefail

step_serving() {
  local url active
  step "2/6 serving" "InferenceService ${ISVC} ready, a predict call, the admin routes guarded"
  wait_ready "the model server" "inferenceservice/${ISVC}" --for=condition=Ready
  admin_token
  port_forward "${NAMESPACE}" "svc/${ISVC}-predictor" 80
  url="http://127.0.0.1:${PF_PORT}/v1/models/${MODEL_NAME}"
  http POST "${url}:predict" -H 'content-type: application/json' \
    --data "{\"instances\": [{\"user_id\": ${SMOKE_USER_ID}, \"k\": 10}]}"
  expect_status 200 "predict" "inferenceservice/${ISVC}"
  if [[ "${DRY_RUN}" == 0 && "$(json 'len(d["predictions"][0]["item_ids"])')" != 10 ]]; then
    fail_step "predict: expected 10 items for user ${SMOKE_USER_ID}: ${HTTP_BODY:0:400}" "inferenceservice/${ISVC}"
  fi
  http GET "${url}/versions"
  expect_status 200 "the versions list" "inferenceservice/${ISVC}"
  active=ACTIVE
  [[ "${DRY_RUN}" == 1 ]] || active="$(json 'd["active"]')"
  http POST "${url}/versions/${active}:activate"
  expect_status 401 "an admin call without the token must be refused" "inferenceservice/${ISVC}"
  admin_http POST "${url}/versions/${active}:activate"
  expect_status 200 "an admin call with the token from Secret recsys-admin" "inferenceservice/${ISVC}"
  stop_port_forwards
  [[ "${DRY_RUN}" == 1 ]] || note "The model server serves version ${active} and guards its admin routes."
}
