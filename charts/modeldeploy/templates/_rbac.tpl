{{/*
The operator's RBAC rules, and no more. Keep them identical to manifests/base/clusterrole.yaml:
tests/integration/chart/test_chart.py compares the rendered rules with it. docs/install.md
explains each rule.
*/}}

{{/* Rules on namespaced objects: a ClusterRole cluster-wide, a Role per watched namespace. */}}
{{- define "modeldeploy.rules.namespaced" -}}
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments]
  verbs: [get, list, watch]
- apiGroups: [modeldeploy.io]
  resources: [modeldeployments/status]
  verbs: [get, patch, update]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, create, patch, delete]
- apiGroups: [gateway.networking.k8s.io]
  resources: [httproutes]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
- apiGroups: [monitoring.coreos.com]
  resources: [servicemonitors, prometheusrules]
  verbs: [get, list, watch, create, patch, delete]
{{- end -}}

{{/* Cluster-scoped read needed in every mode: are the monitoring CRDs there? (kopf discovery). */}}
{{- define "modeldeploy.rules.crds" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end -}}

{{/* Cluster-wide mode only: kopf watches namespaces to follow all of them. */}}
{{- define "modeldeploy.rules.namespaces" -}}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, list, watch]
{{- end -}}

{{/*
Leader election, in the release namespace only: create the Lease (RBAC cannot restrict create by
name: the object does not exist yet), then read and renew that one Lease by name. Keep identical
to manifests/base/leader-election-role.yaml; tests/integration/chart/test_chart.py compares them.
*/}}
{{- define "modeldeploy.rules.leaderElection" -}}
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  verbs: [create]
- apiGroups: [coordination.k8s.io]
  resources: [leases]
  resourceNames: [{{ include "modeldeploy.operatorName" . }}]
  verbs: [get, update]
{{- end -}}
