"""A stand-in for docker, kind, kubectl, helm, gcloud and cluster-setup/image, shared by the cluster-script tests.

Symlinked under each tool's name into a folder put first on PATH: it logs every call to
``$STUB_LOG`` and answers the read-only queries the scripts make; any other call fails loudly.
Docker's answers to the kind preflight can be changed per test: ``STUB_DOCKER_MEMORY`` (bytes),
``STUB_CGROUP_VERSION``, ``STUB_DOCKER_CPUS``. ``image`` stands for cluster-setup/image (the scripts find it
through ``WORKSHOP_IMAGE_SCRIPT``): it only logs, and in a dry run prints one line like the real one would.
"""

STUB = r"""#!/usr/bin/env bash
name="$(basename "$0")"
printf '%s %s\n' "$name" "$*" >> "$STUB_LOG"
case "$name $*" in
  "kind version") echo "${STUB_KIND_VERSION:-kind v0.31.0 go1.25.5 linux/amd64}" ;;
  "docker version --format {{.Server.Version}}") echo "28.2.2" ;;
  "docker info --format {{.DockerRootDir}}") echo "/" ;;
  "docker info --format {{.MemTotal}}") echo "${STUB_DOCKER_MEMORY:-16647577600}" ;;
  "docker info --format {{.CgroupVersion}}") echo "${STUB_CGROUP_VERSION-2}" ;;
  "docker info --format {{.NCPU}}") echo "${STUB_DOCKER_CPUS:-8}" ;;
  "kubectl version --client -o json") printf '{\n  "clientVersion": {"gitVersion": "v1.35.2"}\n}\n' ;;
  "helm version --template {{.Version}}") echo "v3.19.0" ;;
  "gcloud version --format value(\"Google Cloud SDK\")") echo "528.0.0" ;;
  "gcloud auth list --filter=status:ACTIVE --format value(account)") echo "student@example.com" ;;
  "gcloud config get-value project") echo "" ;;
  "gcloud container clusters describe "*) exit 1 ;;
  "gcloud compute regions describe "*) echo "24.0 0.0" ;;
  "gcloud compute project-info describe "*) echo "32.0 0.0" ;;
  "image --target "*"--dry-run") echo "[dry-run] (cluster-setup/image stub) $*" ;;
  *) echo "stub: unexpected call: $name $*" >&2; exit 97 ;;
esac
"""
