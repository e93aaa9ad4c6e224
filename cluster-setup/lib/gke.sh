# shellcheck shell=bash
# GKE helpers shared by cluster-setup/gke/up and cluster-setup/gke/down (source after common.sh).
# Sets PROJECT, ZONE and REGION; checks gcloud; prints the cost of the cluster.

PROJECT=""
ZONE="${GKE_ZONE}"
REGION=""

# --project, else $CLOUDSDK_CORE_PROJECT, else the project gcloud is configured with.
resolve_project() {
  if [[ -z "${PROJECT}" ]]; then
    PROJECT="${CLOUDSDK_CORE_PROJECT:-}"
  fi
  if [[ -z "${PROJECT}" ]] && command -v gcloud >/dev/null 2>&1; then
    PROJECT="$(gcloud config get-value project 2>/dev/null || true)"
  fi
  if [[ -z "${PROJECT}" ]]; then
    if [[ "${DRY_RUN}" == 1 ]]; then
      warn "No Google Cloud project set; the dry run shows PROJECT_ID. Pass --project ID."
      PROJECT=PROJECT_ID
    else
      die "No Google Cloud project: pass --project ID (or run: gcloud config set project ID)."
    fi
  fi
  REGION="${ZONE%-*}"
}

# The kubeconfig context that gcloud container clusters get-credentials creates.
gke_context() {
  printf 'gke_%s_%s_%s' "${PROJECT}" "${ZONE}" "${GKE_CLUSTER_NAME}"
}

check_gcloud_common() {
  local account
  check_tool gcloud "${GCLOUD_MIN_VERSION}" "Install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install" \
    -- gcloud version --format 'value("Google Cloud SDK")'
  if command -v gke-gcloud-auth-plugin >/dev/null 2>&1; then
    ok "gke-gcloud-auth-plugin (kubectl authentication to GKE)"
  else
    fail "gke-gcloud-auth-plugin: not found. Install it: gcloud components install gke-gcloud-auth-plugin"
  fi
  if command -v gcloud >/dev/null 2>&1; then
    account="$(gcloud auth list --filter=status:ACTIVE --format 'value(account)' 2>/dev/null | head -n 1 || true)"
    if [[ -n "${account}" ]]; then
      ok "gcloud logged in as ${account}"
    else
      fail "gcloud is not logged in: run gcloud auth login"
    fi
  fi
  if [[ "${PROJECT}" == PROJECT_ID ]]; then
    fail "project: none set (--project ID)"
  else
    ok "project ${PROJECT}, zone ${ZONE}"
  fi
}

# The free trial allows at most 8 vCPUs at a time and no GPUs; the pins in versions.env must respect that.
check_free_trial_size() {
  local vcpus=$((GKE_NUM_NODES * GKE_MACHINE_VCPUS))
  if ((vcpus <= GKE_FREE_TRIAL_MAX_VCPUS)); then
    ok "size: ${vcpus} vCPUs in total (free trial limit ${GKE_FREE_TRIAL_MAX_VCPUS}), no GPUs"
  else
    fail "size: ${vcpus} vCPUs is above the free-trial limit of ${GKE_FREE_TRIAL_MAX_VCPUS}; fix versions.env"
  fi
}

# Regional CPU quota left (limit - usage). Reads from Google Cloud, so it is skipped in a dry run.
check_cpu_quota() {
  local needed=$((GKE_NUM_NODES * GKE_MACHINE_VCPUS)) quota free
  if [[ "${DRY_RUN}" == 1 ]]; then
    advise "CPU quota in ${REGION}: not queried in a dry run (needs ${needed} free vCPUs)."
    return 0
  fi
  if [[ "${PROJECT}" == PROJECT_ID ]] || ! command -v gcloud >/dev/null 2>&1; then
    return 0
  fi
  if cluster_exists; then
    ok "CPU quota: the cluster already exists, nothing new to allocate"
    return 0
  fi
  quota="$(gcloud compute regions describe "${REGION}" --project "${PROJECT}" --flatten quotas \
    --filter 'quotas.metric=CPUS' --format 'value(quotas.limit,quotas.usage)' 2>/dev/null || true)"
  if [[ -z "${quota}" ]]; then
    fail "CPU quota in ${REGION}: could not read it (is the Compute Engine API enabled and billing set up?)"
    return 0
  fi
  free="$(awk '{printf "%d", $1 - $2}' <<<"${quota}")"
  if ((free >= needed)); then
    ok "CPU quota in ${REGION}: ${free} vCPUs free (>= ${needed})"
  else
    fail "CPU quota in ${REGION}: ${free} vCPUs free, the cluster needs ${needed}"
  fi
}

cluster_exists() {
  query gcloud container clusters describe "${GKE_CLUSTER_NAME}" --zone "${ZONE}" --project "${PROJECT}" \
    --format 'value(status)' >/dev/null 2>&1
}

# The cost line: machine type, node count and the on-demand prices pinned in versions.env.
print_cost() {
  awk -v n="${GKE_NUM_NODES}" -v machine="${GKE_MACHINE_TYPE}" -v node="${GKE_PRICE_NODE_PER_HOUR}" \
    -v disk_gb="${GKE_DISK_SIZE_GB}" -v disk_type="${GKE_DISK_TYPE}" -v disk="${GKE_PRICE_DISK_PER_GB_MONTH}" \
    -v fee="${GKE_PRICE_CLUSTER_FEE_PER_HOUR}" -v credited="${GKE_PRICE_CLUSTER_FEE_CREDITED}" \
    -v zone="${ZONE}" -v source="${GKE_PRICE_SOURCE}" 'BEGIN {
      nodes = n * node
      disks = n * disk_gb * disk / 730
      total = nodes + disks + (credited == "yes" ? 0 : fee)
      printf "COST: about $%.2f per hour ($%.2f per day) while the cluster exists, on-demand, zone %s:\n", total, total * 24, zone
      printf "      %d x %s nodes at $%s/h = $%.4f/h; %d x %d GB %s boot disks = $%.4f/h;\n", n, machine, node, nodes, n, disk_gb, disk_type, disks
      if (credited == "yes")
        printf "      GKE cluster fee $%s/h, credited by the GKE free tier (one zonal cluster per billing account).\n", fee
      else
        printf "      GKE cluster fee $%s/h.\n", fee
      printf "      Prices: %s\n", source
    }'
  note "Stop paying with: cluster-setup/gke/down --project ${PROJECT} --zone ${ZONE}"
  note "(it deletes the cluster, its volume disks and the static IP)."
}
