#!/bin/sh
# Regenerate deploy/prometheusrule.yaml from deploy/prometheus/rules.yml (the one source).
# Usage: deploy/prometheus/sync-prometheusrule.sh   (from anywhere)
# tests/deploy/test_rules.py fails when the two differ.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
{
  cat <<'HEADER'
# GENERATED from deploy/prometheus/rules.yml by deploy/prometheus/sync-prometheusrule.sh:
# edit the rules there, then run the script. spec.groups is that file's groups, verbatim.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: pulldoctor
  namespace: pulldoctor
  labels:
    app.kubernetes.io/name: pulldoctor
    # Many Prometheus installs (kube-prometheus-stack) only load rules with their
    # release label: add it here or set ruleSelector accordingly.
    role: alert-rules
spec:
HEADER
  sed -n '/^groups:/,$p' "$here/rules.yml" | sed 's/^\(.\)/  \1/'
} > "$here/../prometheusrule.yaml"
