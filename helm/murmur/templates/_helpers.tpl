{{/* Names ---------------------------------------------------------------- */}}

{{- define "murmur.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name, at most 54 characters so that "-internal" still fits in 63. */}}
{{- define "murmur.fullname" -}}
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

{{- define "murmur.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "murmur.selectorLabels" -}}
app.kubernetes.io/name: {{ include "murmur.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "murmur.labels" -}}
helm.sh/chart: {{ include "murmur.chart" . }}
{{ include "murmur.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: murmuration
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "murmur.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "murmur.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "murmur.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{/* Secrets ---------------------------------------------------------------- */}}

{{/* Name of the Secret the chart creates (auth values, Redis URL). */}}
{{- define "murmur.secretName" -}}
{{- include "murmur.fullname" . -}}
{{- end -}}

{{/* True when client tokens are verified with a public key. */}}
{{- define "murmur.usesPublicKey" -}}
{{- if or .Values.auth.jwtPublicKey .Values.auth.jwtPublicKeyConfigMap.name -}}true{{- end -}}
{{- end -}}

{{/* True in cluster mode (a Redis URL is configured). */}}
{{- define "murmur.clustered" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* True when the chart's Secret has at least one key. */}}
{{- define "murmur.ownsSecret" -}}
{{- if or (not .Values.auth.existingSecret) (and .Values.redis.url (not .Values.redis.existingSecret)) (and .Values.push.webhookUrl (not .Values.push.existingSecret)) -}}true{{- end -}}
{{- end -}}

{{/*
A secret value: the one given in values, else the one already in the release's
Secret (lookup, so upgrades keep generated keys), else a new random one.
Arguments: (list $ "key-in-secret" .Values.auth.x)
*/}}
{{- define "murmur.secretValue" -}}
{{- $root := index . 0 -}}
{{- $key := index . 1 -}}
{{- $given := index . 2 -}}
{{- if $given -}}
{{- $given -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (include "murmur.secretName" $root) -}}
{{- if and $existing $existing.data (hasKey $existing.data $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Drain and grace period ---------------------------------------------------- */}}

{{- define "murmur.minGracePeriod" -}}
{{- add (int .Values.drain.preStopSleepSeconds) (int .Values.drain.delaySeconds) (int .Values.drain.timeoutSeconds) (int .Values.drain.marginSeconds) -}}
{{- end -}}

{{- define "murmur.gracePeriod" -}}
{{- $min := include "murmur.minGracePeriod" . | int -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- $min -}}
{{- else if eq (toString .Values.terminationGracePeriodSeconds) "" -}}
{{- $min -}}
{{- else -}}
{{- $set := .Values.terminationGracePeriodSeconds | int -}}
{{- if lt $set $min -}}
{{- fail (printf "terminationGracePeriodSeconds=%d is shorter than the drain: drain.preStopSleepSeconds + drain.delaySeconds + drain.timeoutSeconds + drain.marginSeconds = %d. Kubernetes would SIGKILL nodes in the middle of their drain." $set $min) -}}
{{- end -}}
{{- $set -}}
{{- end -}}
{{- end -}}

{{/* Checks that stop a broken install at render time ---------------------------- */}}

{{- define "murmur.validate" -}}
{{- $clustered := include "murmur.clustered" . -}}
{{- if and (not $clustered) (or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1)) -}}
{{- fail "more than one murmur node needs Redis: set redis.url or redis.existingSecret (without it every pod is an isolated single node and sessions break across pods), or keep replicaCount=1 without autoscaling" -}}
{{- end -}}
{{- if and .Values.sink.enabled (not .Values.sink.tls.existingSecret) (not .Values.config.dev) -}}
{{- fail "sink.enabled needs sink.tls.existingSecret (server certificate, key and client CA): murmur opens the Sink TCP listener only with TLS (or in development mode)" -}}
{{- end -}}
{{- if and .Values.auth.jwtPublicKey .Values.auth.jwtPublicKeyConfigMap.name -}}
{{- fail "set auth.jwtPublicKey or auth.jwtPublicKeyConfigMap.name, not both" -}}
{{- end -}}
{{- if and .Values.auth.existingSecret (or .Values.auth.jwtSecret .Values.auth.recoverySecret .Values.auth.apiKey) -}}
{{- fail "auth.existingSecret is set: leave auth.jwtSecret, auth.recoverySecret and auth.apiKey empty (they would be ignored)" -}}
{{- end -}}
{{- if and .Values.redis.url .Values.redis.existingSecret -}}
{{- fail "set redis.url or redis.existingSecret, not both" -}}
{{- end -}}
{{- if gt (int .Values.drain.delaySeconds) (int .Values.drain.timeoutSeconds) -}}
{{- fail "drain.delaySeconds must not exceed drain.timeoutSeconds (the timeout counts from SIGTERM and includes the delay)" -}}
{{- end -}}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) -}}
{{- fail "podDisruptionBudget: set maxUnavailable or minAvailable, not both (null the other)" -}}
{{- end -}}
{{- range $name, $_ := .Values.config.extraEnv -}}
{{- if has $name (list "MURMUR_JWT_SECRET" "MURMUR_RECOVERY_SECRET" "MURMUR_API_KEY" "MURMUR_REDIS_URL" "MURMUR_PUSH_WEBHOOK_SECRET") -}}
{{- fail (printf "config.extraEnv.%s: secrets never go into the ConfigMap; use auth.*, redis.* or an existing Secret" $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
