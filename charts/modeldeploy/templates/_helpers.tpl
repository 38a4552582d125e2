{{/* Object name prefix: the release name, plus "-modeldeploy" unless it already contains it. */}}
{{- define "modeldeploy.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's objects (Deployment, Service, RBAC): <prefix>-operator. */}}
{{- define "modeldeploy.operatorName" -}}
{{- printf "%s-operator" (include "modeldeploy.fullname" .) -}}
{{- end -}}

{{- define "modeldeploy.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modeldeploy.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the operator pod; never change them on upgrade (selectors are immutable). */}}
{{- define "modeldeploy.selectorLabels" -}}
app.kubernetes.io/name: modeldeploy
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "modeldeploy.labels" -}}
{{ include "modeldeploy.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "modeldeploy.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
Name of the webhook registered in MLflow, one per installation (`--registry-webhook-name`):
<namespace>-<prefix>, so releases of the same name in two namespaces sharing one MLflow do not
replace each other's webhook. At most 63 characters; a longer name is cut and ends in a hash of
the whole, so two long names still differ.
*/}}
{{- define "modeldeploy.registryWebhookName" -}}
{{- $name := printf "%s-%s" .Release.Namespace (include "modeldeploy.fullname" .) -}}
{{- if gt (len $name) 63 -}}
{{- printf "%s-%s" ($name | trunc 54 | trimSuffix "-") ($name | sha256sum | trunc 8) -}}
{{- else -}}
{{- $name -}}
{{- end -}}
{{- end -}}
