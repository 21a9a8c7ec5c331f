{{/*
Names are fixed, not derived from the release: the webhook configurations are
cluster-scoped and clonegate looks for its Service, Secret and configurations
by these names (clonegate serve's defaults), and the runbooks use them.
*/}}

{{/* Labels on every object: config/default's, plus Helm's own. */}}
{{- define "clonegate.labels" -}}
app.kubernetes.io/part-of: clonegate
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{/* The pods' labels, which the Deployment, Service, PDB and NetworkPolicy select. */}}
{{- define "clonegate.selectorLabels" -}}
app.kubernetes.io/name: clonegate
app.kubernetes.io/component: webhook
{{- end }}

{{/* The namespaces that never call clonegate: kube-system, clonegate's own, and the extra ones. */}}
{{- define "clonegate.namespaceSelector" -}}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ concat (list "kube-system" .Release.Namespace) .Values.webhooks.exemptNamespaces | uniq | toJson }}
    # A namespace labelled clonegate.dev/exempt=true never calls clonegate,
    # so it is unaffected by an outage (the policy's exemptNamespaces are
    # still called, and fail closed while clonegate is down).
    - key: clonegate.dev/exempt
      operator: NotIn
      values: ["true"]
{{- end }}

{{/* clientConfig of one webhook, by path. */}}
{{- define "clonegate.clientConfig" -}}
clientConfig:
  service:
    name: clonegate-webhook
    namespace: {{ .root.Release.Namespace }}
    path: {{ .path }}
    port: 443
{{- end }}

{{/* cert-manager's cainjector fills caBundle from the Certificate. */}}
{{- define "clonegate.injectCA" -}}
{{- if .Values.certManager.enabled }}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/clonegate-webhook-cert
{{- end }}
{{- end }}
