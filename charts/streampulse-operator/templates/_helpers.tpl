{{- define "streampulse-operator.name" -}}
{{- printf "%s" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "streampulse-operator.labels" -}}
app.kubernetes.io/name: streampulse-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "streampulse-operator.selector" -}}
app.kubernetes.io/name: streampulse-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
