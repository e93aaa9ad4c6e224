# shellcheck shell=bash
# GKE helpers shared by cluster-setup/gke/up and cluster-setup/gke/down (source after common.sh).
# Sets PROJECT, ZONE and REGION; checks gcloud and the CPU quotas; tells what exists; prints the cost.

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

# --- what exists (read-only; each reports "no" in a dry run) -------------------------------------------------

cluster_exists() {
  query gcloud container clusters describe "${GKE_CLUSTER_NAME}" --zone "${ZONE}" --project "${PROJECT}" \
    --format 'value(status)' >/dev/null 2>&1
}

address_exists() {
  query gcloud compute addresses describe "${GKE_JUPYTERHUB_ADDRESS_NAME}" --region "${REGION}" \
    --project "${PROJECT}" --format 'value(address)' >/dev/null 2>&1
}

repository_exists() {
  query gcloud artifacts repositories describe "${GKE_ARTIFACT_REPOSITORY}" --location "${REGION}" \
    --project "${PROJECT}" --format 'value(name)' >/dev/null 2>&1
}

# --- quotas --------------------------------------------------------------------------------------------------

# quota_free LIMIT_AND_USAGE: "limit usage" (as gcloud prints them) -> whole vCPUs left.
quota_free() {
  awk '{printf "%d", $1 - $2}' <<<"$1"
}

# The cluster's vCPUs must fit both the regional CPUS quota and the project-wide CPUS_ALL_REGIONS quota (a
# new or free-trial project has 8 or 12 for all regions together). Run after the Compute Engine API is on:
# before that a fresh project reports no quota at all. Dies if a quota is short; nothing billable exists yet.
check_cpu_quotas() {
  local needed=$((GKE_NUM_NODES * GKE_MACHINE_VCPUS)) regional global short=0
  log "CPU quotas (the cluster needs ${needed} vCPUs)"
  if [[ "${DRY_RUN}" == 1 ]]; then
    note "(not queried in a dry run: the regional CPUS quota of ${REGION} and the project's CPUS_ALL_REGIONS)"
    return 0
  fi
  if cluster_exists; then
    note "The cluster already exists: nothing new to allocate."
    return 0
  fi
  regional="$(gcloud compute regions describe "${REGION}" --project "${PROJECT}" --flatten quotas \
    --filter 'quotas.metric=CPUS' --format 'value(quotas.limit,quotas.usage)' 2>/dev/null || true)"
  global="$(gcloud compute project-info describe --project "${PROJECT}" --flatten quotas \
    --filter 'quotas.metric=CPUS_ALL_REGIONS' --format 'value(quotas.limit,quotas.usage)' 2>/dev/null || true)"
  if [[ -z "${regional}" ]]; then
    warn "CPUS quota of ${REGION}: could not be read (is billing set up for ${PROJECT}?)."
    short=1
  elif (($(quota_free "${regional}") < needed)); then
    warn "CPUS quota of ${REGION}: $(quota_free "${regional}") vCPUs free, the cluster needs ${needed}."
    short=1
  else
    ok "CPUS quota of ${REGION}: $(quota_free "${regional}") vCPUs free (>= ${needed})"
  fi
  if [[ -z "${global}" ]]; then
    warn "CPUS_ALL_REGIONS quota of ${PROJECT}: could not be read (is billing set up?)."
    short=1
  elif (($(quota_free "${global}") < needed)); then
    warn "CPUS_ALL_REGIONS quota of ${PROJECT}: $(quota_free "${global}") vCPUs free in all regions together, the cluster needs ${needed}."
    short=1
  else
    ok "CPUS_ALL_REGIONS quota of ${PROJECT}: $(quota_free "${global}") vCPUs free (>= ${needed})"
  fi
  if ((short)); then
    die "Not enough CPU quota; nothing billable was created (only the APIs were enabled, which is free). Free vCPUs (gcloud compute instances list), or ask for more: https://console.cloud.google.com/iam-admin/quotas?project=${PROJECT}"
  fi
}

# --- the cost ------------------------------------------------------------------------------------------------

# The cost lines: every billable thing up creates, priced with the on-demand figures pinned in versions.env.
# WITH_JUPYTERHUB (0/1) adds the hub's static IP, its load balancer and the attendees' volumes.
print_cost() {
  local hub=${WITH_JUPYTERHUB:-0}
  awk -v n="${GKE_NUM_NODES}" -v machine="${GKE_MACHINE_TYPE}" -v node="${GKE_PRICE_NODE_PER_HOUR}" \
    -v disk_gb="${GKE_DISK_SIZE_GB}" -v disk_type="${GKE_DISK_TYPE}" -v disk="${GKE_PRICE_DISK_PER_GB_MONTH}" \
    -v fee="${GKE_PRICE_CLUSTER_FEE_PER_HOUR}" -v credited="${GKE_PRICE_CLUSTER_FEE_CREDITED}" \
    -v ip="${GKE_PRICE_EXTERNAL_IP_PER_HOUR}" -v rule="${GKE_PRICE_FORWARDING_RULE_PER_HOUR}" \
    -v volumes="${GKE_PROFILE_VOLUMES_GB}" -v hub="${hub}" -v hub_gb="${GKE_HUB_VOLUME_GB}" \
    -v user_gb="${GKE_USER_VOLUME_GB}" -v class="${GKE_CLASS_SIZE}" \
    -v image_gb="${GKE_IMAGE_SIZE_GB}" -v registry="${GKE_PRICE_ARTIFACT_STORAGE_PER_GB_MONTH}" \
    -v zone="${ZONE}" -v source="${GKE_PRICE_SOURCE}" 'BEGIN {
      nodes = n * node
      disks = n * disk_gb * disk / 730
      node_ips = n * ip
      pvc_gb = volumes + (hub ? hub_gb + class * user_gb : 0)
      pvcs = pvc_gb * disk / 730
      lb = hub ? ip + rule : 0
      image = image_gb * registry / 730
      total = nodes + disks + node_ips + pvcs + lb + image + (credited == "yes" ? 0 : fee)
      printf "COST: about $%.2f per hour ($%.2f per day, $%.0f per 30 days) while it exists, on-demand, zone %s:\n", total, total * 24, total * 720, zone
      printf "      %d x %s nodes at $%s/h = $%.4f/h; %d x %d GB %s boot disks = $%.4f/h;\n", n, machine, node, nodes, n, disk_gb, disk_type, disks
      printf "      %d node external IPs at $%s/h = $%.4f/h;\n", n, ip, node_ips
      printf "      volumes %d GB %s = $%.4f/h", pvc_gb, disk_type, pvcs
      if (hub)
        printf " (profile %d GB, hub %d GB, %d attendees x %d GB);\n", volumes, hub_gb, class, user_gb
      else
        printf " (Katib and KFP databases, KFP object store, model volume, PostgreSQL);\n"
      if (hub)
        printf "      JupyterHub static IP $%s/h + its load balancer (forwarding rule) $%s/h = $%.4f/h;\n", ip, rule, lb
      printf "      Artifact Registry, the %d GB workshop image at $%s/GB-month = $%.4f/h;\n", image_gb, registry, image
      if (credited == "yes")
        printf "      GKE cluster fee $%s/h, credited by the GKE free tier (one zonal cluster per billing account).\n", fee
      else
        printf "      GKE cluster fee $%s/h.\n", fee
      printf "      Not included: network egress, Cloud Build minutes beyond its free tier. Prices: %s\n", source
    }'
  note "Stop paying with: cluster-setup/gke/down --project ${PROJECT} --zone ${ZONE}"
  note "(it deletes the cluster with its volumes and load balancers, the static IP and the image repository)."
}
