{{- define "ce-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ce-operator.serviceAccountName" -}}
{{- default (include "ce-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "ce-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ce-operator.labels" -}}
{{ include "ce-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /*
The operator's kinds, by resource name, in the order of its registry (src/kinds.rs; a unit
test there checks that the two agree). The webhook, the restore policy, the tenant roles and
the operator's status rights cover each; the operator's own verbs are per kind (rbac.yaml).
*/ -}}
{{- define "ce-operator.kinds" -}}
organizations, accounts, ceusers, rolebindings, elementsafelists
{{- end -}}

{{- define "ce-operator.kindStatuses" -}}
{{- $statuses := list -}}
{{- range splitList ", " (include "ce-operator.kinds" .) -}}
{{- $statuses = append $statuses (printf "%s/status" .) -}}
{{- end -}}
{{- join ", " $statuses -}}
{{- end -}}
