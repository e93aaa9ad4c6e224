"""A stand-in for docker, kind, kubectl, helm and gcloud, shared by the cluster-script tests.

Symlinked under each tool's name into a folder put first on PATH: it logs every call to
``$STUB_LOG`` and answers the read-only queries the scripts make; any other call fails loudly.
"""

STUB = r"""#!/usr/bin/env bash
name="$(basename "$0")"
printf '%s %s\n' "$name" "$*" >> "$STUB_LOG"
case "$name $*" in
  "kind version") echo "${STUB_KIND_VERSION:-kind v0.31.0 go1.25.5 linux/amd64}" ;;
  "docker version --format {{.Server.Version}}") echo "28.2.2" ;;
  "docker info --format {{.DockerRootDir}}") echo "/" ;;
  "kubectl version --client -o json") printf '{\n  "clientVersion": {"gitVersion": "v1.35.2"}\n}\n' ;;
  "helm version --template {{.Version}}") echo "v3.19.0" ;;
  "gcloud version --format value(\"Google Cloud SDK\")") echo "528.0.0" ;;
  "gcloud auth list --filter=status:ACTIVE --format value(account)") echo "student@example.com" ;;
  "gcloud config get-value project") echo "" ;;
  "gcloud container clusters describe "*) exit 1 ;;
  "gcloud compute regions describe "*) echo "24.0 0.0" ;;
  *) echo "stub: unexpected call: $name $*" >&2; exit 97 ;;
esac
"""
