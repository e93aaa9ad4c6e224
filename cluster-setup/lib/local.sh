# shellcheck shell=bash
# This machine's own settings that git must never carry (source after common.sh): the GKE image reference.
#
# Git cannot know your Google Cloud project, so the committed GKE overlay and jupyterhub/values.yaml name the
# placeholder PROJECT_ID and stay as they are. cluster-setup/image --target gke writes the reference of your
# project's image into cluster-setup/local/ instead (git-ignored: a clone stays clean, and a push, Argo CD's
# included, never carries your project id):
#
#   local/gke/kustomization.yaml   the GKE overlay with your image: kubectl apply -k cluster-setup/local/gke
#                                  (kustomize images: sets the name only; the tag stays the overlay's)
#
# gke/up reads it for the hub's single-user image, and refuses --skip-image without it.
#
#   write_local_gke_overlay NAME   record NAME (<region>-docker.pkg.dev/<project>/<repository>/<image>)
#   gke_image_name PROJECT REGION  the workshop image's name in the project's Artifact Registry repository
#   gke_image_name_in_use          the image name the GKE workloads run: the recorded one, else the overlay's
#   gke_image_problem EXPECTED     why the GKE workloads would not run EXPECTED (nothing when they would)
set -Eeuo pipefail

LOCAL_DIR="${CLUSTER_SETUP_DIR}/local"
LOCAL_GKE_OVERLAY="${LOCAL_DIR}/gke"
GKE_OVERLAY_FILE="${CLUSTER_SETUP_DIR}/manifests/overlays/gke/kustomization.yaml"
# The project the committed overlay and hub values name until your image is recorded.
PROJECT_PLACEHOLDER="PROJECT_ID"
# The Artifact Registry host of a region is <region>${AR_HOST_SUFFIX}.
AR_HOST_SUFFIX="-docker.pkg.dev"

gke_image_name() {
  printf '%s%s/%s/%s/%s' "$2" "${AR_HOST_SUFFIX}" "$1" "${GKE_ARTIFACT_REPOSITORY}" "${WORKSHOP_IMAGE##*/}"
}

# The one `newName:` of a kustomization (the GKE overlay has one images: entry; so has the local layer).
kustomization_new_name() {
  [[ -f "$1" ]] || return 0
  sed -n 's/^[[:space:]]*newName:[[:space:]]*//p' "$1" | tr -d "\"'" | head -n 1
}

# The name the committed GKE overlay gives the workshop image (with PROJECT_ID in it).
committed_gke_image_name() {
  kustomization_new_name "${GKE_OVERLAY_FILE}"
}

recorded_gke_image_name() {
  kustomization_new_name "${LOCAL_GKE_OVERLAY}/kustomization.yaml"
}

gke_image_name_in_use() {
  local recorded
  recorded="$(recorded_gke_image_name)"
  printf '%s' "${recorded:-$(committed_gke_image_name)}"
}

# gke_image_problem EXPECTED: what is wrong with the image name the GKE workloads would run, when it is not
# EXPECTED (the name in the project's repository that gke/up creates); prints nothing when it is.
gke_image_problem() {
  local expected=$1 in_use
  in_use="$(gke_image_name_in_use)"
  if [[ -z "${in_use}" ]]; then
    printf '%s names no workshop image' "${GKE_OVERLAY_FILE#"${REPO_ROOT}/"}"
  elif [[ "${in_use}" == */"${PROJECT_PLACEHOLDER}"/* ]]; then
    printf 'no image of your project is recorded (%s is missing), so the GKE overlay and the hub still name the placeholder %s: every workshop pod would fail to pull its image' \
      "${LOCAL_GKE_OVERLAY#"${REPO_ROOT}/"}/kustomization.yaml" "${in_use}"
  elif [[ "${in_use}" != "${expected}" ]]; then
    printf 'the workshop image recorded is %s, not %s of this project and region' "${in_use}" "${expected}"
  fi
}

# write_local_gke_overlay NAME: the kustomize layer over the committed GKE overlay that names NAME instead of
# the placeholder, written whole into a temporary file and renamed into place (never half-written).
write_local_gke_overlay() {
  local name=$1 committed temporary
  committed="$(committed_gke_image_name)"
  [[ -n "${committed}" ]] || die "${GKE_OVERLAY_FILE#"${REPO_ROOT}/"} has no images: newName to replace."
  mkdir -p "${LOCAL_GKE_OVERLAY}"
  temporary="$(mktemp "${LOCAL_GKE_OVERLAY}/.kustomization.XXXXXX")"
  cat >"${temporary}" <<EOF
# Written by cluster-setup/image --target gke: the GKE overlay with the workshop image of your project.
# Not in git (cluster-setup/local/ is in .gitignore); re-run cluster-setup/image to change it.
#   kubectl apply -k cluster-setup/local/gke
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../manifests/overlays/gke
images:
  # the name only: the tag stays the one the overlay (and lab 13's releases) set
  - name: ${committed}
    newName: ${name}
EOF
  mv "${temporary}" "${LOCAL_GKE_OVERLAY}/kustomization.yaml"
}
