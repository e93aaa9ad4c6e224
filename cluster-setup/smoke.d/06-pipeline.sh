# shellcheck shell=bash
# Step 6 of cluster-setup/smoke (sourced by it): a Kubeflow Pipelines run completes and pushes a new version that
# the model server serves.
#
# Kubeflow Pipelines standalone runs the pipeline in namespace kubeflow, where the model volume of the workshop's
# namespace cannot be mounted: its compare and push steps use the model server's admin API instead (download the
# deployed version, upload the candidate, activate it; cluster-setup/README.md, "Storage").
#
# The gate (pipelines.steps.is_better) pushes only a candidate that beats the deployed model on this run's test
# split, and the run's candidate may or may not beat the model of step 1: so the step submits the run with the
# pipeline's force_push=true (the push step overrides a refusal and says so in its log), and every run must push.
# It reads the gate's decision from the log of the run's compare step and reports it, then checks the push: a new
# version, active, that answers.
set -Eeuo pipefail

# Submit the compiled pipeline the way lab 09 does (pipelines.cluster_arguments: deployed_dir is the model
# server's URL, after checking that the run's namespace holds the admin token's Secret), write the run's id to
# RUN_ID_FILE, then wait for the run. Given to Python on its standard input:
# python - KFP_HOST PACKAGE JOB_CONFIG_FILE CONTEXT NAMESPACE TIMEOUT RUN_ID_FILE.
KFP_SUBMIT='
import sys

import kfp
from kubernetes import client as k8s, config as k8s_config

from recsys_workshop import pipelines

host, package, job_config, context, namespace, timeout, run_id_file = sys.argv[1:8]
core = k8s.CoreV1Api(k8s_config.new_client_from_config(context=context))
try:
    arguments = pipelines.cluster_arguments(
        open(job_config, encoding="utf-8").read(), namespace=namespace, core_api=core, force_push=True
    )
except pipelines.ClusterNotReady as reason:
    sys.exit(f"not submitted: {reason}")
print("arguments:", {key: value for key, value in arguments.items() if key != "job_config"}, flush=True)
client = kfp.Client(host=host)
run = client.create_run_from_pipeline_package(
    package, arguments=arguments, run_name="recsys-smoke", experiment_name="recsys-smoke", enable_caching=False
)
with open(run_id_file, "w", encoding="utf-8") as out:
    out.write(run.run_id + "\n")
print(f"run {run.run_id} submitted", flush=True)
try:
    final = client.wait_for_run_completion(run.run_id, timeout=int(timeout), sleep_duration=10)
except TimeoutError:
    sys.exit(f"run {run.run_id} did not finish within {timeout} s")
print(f"run {run.run_id}: {final.state}", flush=True)
if final.state != "SUCCEEDED":
    sys.exit(f"run {run.run_id} ended {final.state}: {final.error}")
'

# What the compare step prints (pipelines.steps.step_compare's reason): the gate's decision.
GATE_LINE='^(nothing deployed yet|candidate ndcg@[0-9]+ [0-9.]+ vs deployed v[^ ]+ [0-9.]+: (better|not better))$'
# The label Kubeflow Pipelines puts on every pod of a run.
KFP_RUN_LABEL="pipeline/runid"
RUN_ID=""
GATE=""        # push (the candidate is better, or nothing was deployed) or keep (not better: force_push pushes it)
GATE_REASON="" # the compare step's line

# The pipeline compiled with every step on the workshop image the cluster has.
compile_for_smoke() {
  local images
  run "${PYTHON}" -m recsys_workshop.pipelines compile --image "${WORKSHOP_IMAGE_REF}" "${OUT}/pipeline.yaml"
  if [[ "${DRY_RUN}" == 0 ]]; then
    images="$(images_in "${OUT}/pipeline.yaml")"
    [[ "${images}" == "${WORKSHOP_IMAGE_REF}" ]] ||
      fail_step "the pipeline's steps run ${images//$'\n'/, }, not the workshop image ${WORKSHOP_IMAGE_REF} that the cluster has."
  fi
  # A candidate that trains longer than the training job's model (step 1): likely, not certain, to beat it.
  run_quiet "${PYTHON}" -m recsys_workshop.kube write-config "${BASE_CONFIG}" "${OUT}/pipeline-train.json" \
    "train.epochs=$((TRAIN_EPOCHS + 2))"
}

# The highest version the model server holds, and the active one: "<latest> <active>" in VERSIONS_SEEN.
model_versions() {
  local url=$1 what=$2
  http GET "${url}/versions"
  expect_status 200 "${what}" "inferenceservice/${ISVC}"
  VERSIONS_SEEN="LATEST ACTIVE"
  [[ "${DRY_RUN}" == 1 ]] || VERSIONS_SEEN="$(json 'max(v["version"] for v in d["versions"]), d["active"]' | tr -d '(),')"
}

# model_versions_now WHAT: the model server's "<latest> <active>" versions (VERSIONS_SEEN), through a port-forward.
model_versions_now() {
  port_forward "${NAMESPACE}" "svc/${ISVC}-predictor" 80
  model_versions "http://127.0.0.1:${PF_PORT}/v1/models/${MODEL_NAME}" "$1"
  stop_port_forwards
}

submit_run() {
  port_forward "${KFP_NAMESPACE}" svc/ml-pipeline 8888
  note "Submitting the run with kfp.Client and waiting for it (KFP_SUBMIT in smoke.d/06-pipeline.sh):"
  if ! run "${PYTHON}" - "http://127.0.0.1:${PF_PORT}" "${OUT}/pipeline.yaml" "${OUT}/pipeline-train.json" \
    "${CONTEXT}" "${KFP_NAMESPACE}" "${TIMEOUT}" "${OUT}/pipeline-run-id" <<<"${KFP_SUBMIT}"; then
    fail_step "the pipeline run did not succeed (see above)." "inferenceservice/${ISVC}"
  fi
  stop_port_forwards
  RUN_ID=RUN_ID
  [[ "${DRY_RUN}" == 1 ]] || RUN_ID="$(cat "${OUT}/pipeline-run-id")"
}

# The gate's decision, as the run's compare step printed it, from the logs of the run's pods (kept in
# pipeline-run.log): GATE and GATE_REASON.
read_gate_decision() {
  local logs
  read_value logs kubectl --context "${CONTEXT}" -n "${KFP_NAMESPACE}" logs -l "${KFP_RUN_LABEL}=${RUN_ID}" \
    --all-containers --prefix --tail=-1
  GATE=push
  [[ "${DRY_RUN}" == 0 ]] || return 0
  printf '%s\n' "${logs}" >"${OUT}/pipeline-run.log"
  GATE_REASON="$(sed -E 's/^\[[^]]*\] //' <<<"${logs}" | grep -E "${GATE_LINE}" | tail -n 1 || true)"
  if [[ -z "${GATE_REASON}" ]]; then
    fail_step "run ${RUN_ID} succeeded, but the gate's decision (the compare step's line 'candidate ndcg@... : better', \
'... : not better' or 'nothing deployed yet') is in no log of its pods: ${OUT#"${REPO_ROOT}/"}/pipeline-run.log."
  fi
  [[ "${GATE_REASON}" != *": not better" ]] || GATE=keep
  note "The gate decided: ${GATE_REASON} -> $([[ "${GATE}" == push ]] && echo push || echo "keep the deployed model, \
overridden by force_push")."
}

step_pipeline() {
  local before latest active url
  step "6/6 pipeline" "a Kubeflow Pipelines run completes and pushes a version the model server in ${NAMESPACE} serves"
  dump_kfp_on_failure 1
  compile_for_smoke
  admin_token
  model_versions_now "the model server's versions before the run"
  before="${VERSIONS_SEEN%% *}"
  submit_run
  read_gate_decision
  port_forward "${NAMESPACE}" "svc/${ISVC}-predictor" 80
  url="http://127.0.0.1:${PF_PORT}/v1/models/${MODEL_NAME}"
  model_versions "${url}" "the model server's versions after the run"
  latest="${VERSIONS_SEEN%% *}"
  active="${VERSIONS_SEEN##* }"
  if [[ "${DRY_RUN}" == 0 ]] && ! ((latest > before && active == latest)); then
    fail_step "the run was submitted with force_push (the gate decided: ${GATE_REASON}), but the model server in \
${NAMESPACE} holds no new active version (latest ${before} before the run, now latest ${latest}, active ${active}): \
the push did not reach it (see the push-model pod's log in ${OUT#"${REPO_ROOT}/"}/pipeline-run.log)." \
      "inferenceservice/${ISVC}"
  fi
  http POST "${url}:predict" -H 'content-type: application/json' -H "x-model-version: ${active}" \
    --data "{\"instances\": [{\"user_id\": ${SMOKE_USER_ID}, \"k\": 10}]}"
  expect_status 200 "predict with the pushed version" "inferenceservice/${ISVC}"
  stop_port_forwards
  [[ "${DRY_RUN}" == 0 ]] || return 0
  [[ "$(json 'len(d["predictions"][0]["item_ids"])')" == 10 ]] ||
    fail_step "predict with the pushed version: expected 10 items: ${HTTP_BODY:0:400}" "inferenceservice/${ISVC}"
  dump_kfp_on_failure 0
  note "The run pushed version ${active} through the model server's admin API; it is active and serves."
}
