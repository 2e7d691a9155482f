{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "tasked.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tasked.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "tasked.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tasked.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tasked.runnerTokenSecret" -}}
{{- default (printf "%s-runner-token" (include "tasked.fullname" .)) .Values.runnerToken.existingSecret -}}
{{- end -}}

{{- define "tasked.apiKeySecret" -}}
{{- default (printf "%s-api-key" (include "tasked.fullname" .)) .Values.apiKey.existingSecret -}}
{{- end -}}

{{/* Labels --------------------------------------------------------------------------------- */}}

{{- define "tasked.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "tasked.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tasked
{{- end -}}

{{/* selectorLabels: pass (dict "ctx" $ "component" "controller") */}}
{{- define "tasked.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tasked.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images --------------------------------------------------------------------------------- */}}

{{/* image: pass (dict "ctx" $ "image" .Values.runner.image) */}}
{{- define "tasked.image" -}}
{{- $repo := printf "%s%s" .ctx.Values.imageRegistry .image.repository -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $repo .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Security ------------------------------------------------------------------------------- */}}

{{/* The pod-level context shared by every Tasked pod: the Pod Security Standard "restricted"
     profile and then some. fsGroup makes the mounted Secret files readable by group 65532
     while their mode stays 0440. */}}
{{- define "tasked.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A container that cannot gain anything: nobody, read-only root, no capabilities, no
     setuid escalation, the runtime's seccomp filter. */}}
{{- define "tasked.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tasked.runnerAppArmor" -}}
{{- if eq .Values.appArmor.type "Localhost" -}}
appArmorProfile:
  type: Localhost
  localhostProfile: {{ .Values.appArmor.localhostProfile }}
{{- else if eq .Values.appArmor.type "RuntimeDefault" -}}
appArmorProfile:
  type: RuntimeDefault
{{- end -}}
{{- end -}}

{{/* The controller and test pods: the runtime's default profile, unless appArmor.type=None
     (nodes without AppArmor refuse pods that ask for any profile). */}}
{{- define "tasked.defaultAppArmor" -}}
{{- if ne .Values.appArmor.type "None" -}}
appArmorProfile:
  type: RuntimeDefault
{{- end -}}
{{- end -}}

{{/* Broker URL for runners: loopback for sidecars, the broker Service for pools. */}}
{{- define "tasked.brokerScheme" -}}
{{- if .Values.tls.existingSecret -}}wss{{- else -}}ws{{- end -}}
{{- end -}}

{{/* Runner container: pass (dict "ctx" $ "name" NAME "controller" URL "r" MERGED-RUNNER-VALUES "tmpVolume" VOL "pool" BOOL) */}}
{{- define "tasked.runnerContainer" -}}
{{- $ctx := .ctx -}}
{{- $r := .r -}}
- name: {{ .name }}
  image: {{ include "tasked.image" (dict "ctx" $ctx "image" $r.image) }}
  imagePullPolicy: {{ $r.image.pullPolicy }}
  args:
    - --controller={{ .controller }}
    - --token-file=/var/run/secrets/tasked/runner-token
    {{- if $ctx.Values.tls.existingSecret }}
    - --ca-file=/var/run/secrets/tasked/ca.crt
    {{- end }}
    - --concurrency={{ $r.concurrency }}
    - --labels={{- $first := true -}}{{- range $k, $v := $r.labels -}}{{- if not $first -}},{{- end -}}{{ $k }}={{ $v }}{{- $first = false -}}{{- end }}
    - --work-dir=/tmp
    - --grace-seconds={{ $r.graceSeconds }}
    - --log-level={{ $r.logLevel }}
    - --health-file=/tmp/tasked-runner.health
    {{- range $r.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  securityContext:
    {{- include "tasked.containerSecurityContext" $ctx | nindent 4 }}
    {{- include "tasked.runnerAppArmor" $ctx | nindent 4 }}
  # The runner serves no port. Its event loop rewrites /tmp/tasked-runner.health every 5 s;
  # the probes exec the runner binary to judge that file: liveness fails when the loop is
  # stuck (the file ages past 30 s). A pool runner is ready once connected to the broker; a
  # sidecar runner is ready when live (in a standby controller pod it is never connected, and
  # that pod must still be Ready).
  startupProbe:
    exec:
      command: [/usr/local/bin/tasked-runner, --check-health, /tmp/tasked-runner.health]
    periodSeconds: 2
    failureThreshold: 15
  livenessProbe:
    exec:
      command: [/usr/local/bin/tasked-runner, --check-health, /tmp/tasked-runner.health, --max-age-seconds, "30"]
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  readinessProbe:
    exec:
      command: [/usr/local/bin/tasked-runner, --check-health, /tmp/tasked-runner.health{{ if .pool }}, --ready{{ end }}]
    periodSeconds: 5
    timeoutSeconds: 5
  resources:
    {{- toYaml $r.resources | nindent 4 }}
  volumeMounts:
    - name: {{ .tmpVolume }}
      mountPath: /tmp
    # The token (and the broker's CA) as files, never env vars; nothing else is mounted.
    - name: runner-secrets
      mountPath: /var/run/secrets/tasked
      readOnly: true
{{- end -}}

{{/* tmp emptyDir: pass the merged runner values' tmp */}}
{{- define "tasked.tmpVolume" -}}
emptyDir:
  {{- if .medium }}
  medium: {{ .medium }}
  {{- end }}
  sizeLimit: {{ .sizeLimit }}
{{- end -}}

{{/* The runner's only Secret volume: its token, and the CA that signed the broker's cert. */}}
{{- define "tasked.runnerSecretsVolume" -}}
- name: runner-secrets
  projected:
    defaultMode: 0440
    sources:
      - secret:
          name: {{ include "tasked.runnerTokenSecret" . }}
          items:
            - {key: {{ .Values.runnerToken.key }}, path: runner-token}
      {{- if .Values.tls.existingSecret }}
      - secret:
          name: {{ .Values.tls.existingSecret }}
          items:
            - {key: ca.crt, path: ca.crt}
      {{- end }}
{{- end -}}

{{/* NetworkPolicy egress pieces: pass .Values.networkPolicy */}}
{{- define "tasked.npDNS" -}}
# DNS, wherever the cluster resolver runs (CoreDNS, node-local caches).
- ports:
    {{- range .dnsPorts }}
    - {protocol: UDP, port: {{ . }}}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
{{- define "tasked.npTaskEgress" -}}
{{- if .taskEgress }}
# Tasks' own traffic (http tasks, tools in shell tasks): networkPolicy.taskEgress.
- to:
    {{- toYaml .taskEgress | nindent 4 }}
{{- end }}
{{- end }}

{{/* The admission webhook: its Secret, Service and ValidatingWebhookConfiguration names (the
configuration is cluster-scoped, so it carries the namespace too). */}}
{{- define "tasked.webhookSecret" -}}
{{- default (printf "%s-webhook-tls" (include "tasked.fullname" .)) .Values.webhook.secretName -}}
{{- end }}
{{- define "tasked.webhookService" -}}
{{- printf "%s-webhook" (include "tasked.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end }}
{{- define "tasked.webhookConfig" -}}
{{- printf "%s-%s" (include "tasked.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" -}}
{{- end }}
