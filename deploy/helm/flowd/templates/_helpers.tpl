{{/* The name every object carries: the release name, so two releases never collide. */}}
{{- define "flowd.name" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "flowd.selectorLabels" -}}
app.kubernetes.io/name: flowd
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "flowd.labels" -}}
{{ include "flowd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Refusals the schema cannot express: they need two values at once. */}}
{{- define "flowd.refusals" -}}
{{- if and .Values.listener.enabled (not .Values.listener.tls.secretName) (not .Values.listener.insecure) -}}
{{- fail "listener.enabled needs listener.tls.secretName (a Secret with tls.crt, tls.key and the client CA ca.crt): without TLS and client certificates anyone who reaches a node's port reads every flow. Set listener.insecure=true to serve it in plaintext anyway" -}}
{{- end -}}
{{- if and .Values.listener.enabled .Values.listener.tls.secretName .Values.listener.insecure -}}
{{- fail "listener.insecure=true together with listener.tls.secretName: choose one (TLS with client certificates, or plaintext)" -}}
{{- end -}}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.enabled=true: the ServiceMonitor scrapes the agents' metrics port" -}}
{{- end -}}
{{- if and .Values.relay.enabled (not .Values.listener.enabled) -}}
{{- fail "relay.enabled needs listener.enabled: the relay reads the agents over their TCP listener" -}}
{{- end -}}
{{- if and .Values.relay.enabled (not .Values.relay.tls.secretName) (not .Values.relay.insecure) -}}
{{- fail "relay.enabled needs relay.tls.secretName (tls.crt, tls.key and ca.crt) or relay.insecure=true: the relay serves every node's flows" -}}
{{- end -}}
{{- if and .Values.relay.enabled .Values.relay.tls.secretName (or (not .Values.relay.tls.agentServerName) (not .Values.relay.tls.serverName)) -}}
{{- fail "relay.tls.secretName needs relay.tls.agentServerName (the name in the agents' certificates) and relay.tls.serverName (the name in the relay's)" -}}
{{- end -}}
{{- if and .Values.relay.enabled .Values.relay.insecure (not .Values.listener.insecure) -}}
{{- fail "relay.insecure=true reads the agents in plaintext, which needs listener.insecure=true too; or give relay.tls.secretName" -}}
{{- end -}}
{{- if and .Values.ui.enabled (not .Values.listener.enabled) -}}
{{- fail "ui.enabled needs listener.enabled: the UI is served with the listener's TLS secret and client certificates (or in plaintext with listener.insecure)" -}}
{{- end -}}
{{- if and .Values.ui.enabled (or (eq (int .Values.ui.port) (int .Values.listener.port)) (and .Values.metrics.enabled (eq (int .Values.ui.port) (int .Values.metrics.port)))) -}}
{{- fail "ui.port is the port of the listener or of the metrics; give it its own" -}}
{{- end -}}
{{- if and .Values.relay.enabled .Values.relay.ui.enabled (eq (int .Values.relay.ui.port) (int .Values.relay.port)) -}}
{{- fail "relay.ui.port is relay.port; give the relay's UI its own port" -}}
{{- end -}}
{{- if and .Values.listener.enabled .Values.metrics.enabled (eq (int .Values.listener.port) (int .Values.metrics.port)) -}}
{{- fail "listener.port and metrics.port are the same port; give them different ones" -}}
{{- end -}}
{{- end -}}

{{/* The agent's settings file: config, plus what listener and metrics decide. */}}
{{- define "flowd.settings" -}}
{{- $settings := deepCopy .Values.config -}}
{{- if .Values.listener.enabled -}}
{{- $_ := set $settings "listen" (printf "0.0.0.0:%d" (int .Values.listener.port)) -}}
{{- if .Values.listener.tls.secretName -}}
{{- $_ := set $settings "tlsCert" (printf "/etc/flowd/tls/%s" .Values.listener.tls.certKey) -}}
{{- $_ := set $settings "tlsKey" (printf "/etc/flowd/tls/%s" .Values.listener.tls.keyKey) -}}
{{- $_ := set $settings "tlsClientCa" (printf "/etc/flowd/tls/%s" .Values.listener.tls.clientCaKey) -}}
{{- else -}}
{{- $_ := set $settings "insecureListen" true -}}
{{- end -}}
{{- end -}}
{{- if .Values.ui.enabled -}}
{{- $_ := set $settings "uiListen" (printf "0.0.0.0:%d" (int .Values.ui.port)) -}}
{{- if not .Values.listener.tls.secretName -}}
{{- $_ := set $settings "insecureUi" true -}}
{{- end -}}
{{- end -}}
{{- if .Values.metrics.enabled -}}
{{- $_ := set $settings "metricsListen" (printf "0.0.0.0:%d" (int .Values.metrics.port)) -}}
{{- $_ := set $settings "insecureMetrics" true -}}
{{- end -}}
{{- if .Values.policiesConfigMap -}}
{{- $_ := set $settings "policyFiles" (list "/etc/flowd/policies") -}}
{{- end -}}
{{- toYaml $settings -}}
{{- end -}}
