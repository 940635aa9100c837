{{/* The chart name, at most 63 characters. */}}
{{- define "portico.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name of every object: fullnameOverride, else the release name when it already
contains the chart name, else "<release>-<chart>". At most 63 characters.
*/}}
{{- define "portico.fullname" -}}
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

{{/* "portico-0.1.0", for the helm.sh/chart label. */}}
{{- define "portico.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that tell this release's objects apart. */}}
{{- define "portico.instanceLabels" -}}
app.kubernetes.io/name: {{ include "portico.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels that select the controller pods. Never change them: selectors are immutable. */}}
{{- define "portico.selectorLabels" -}}
{{ include "portico.instanceLabels" . }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* Labels on every object, without app.kubernetes.io/component. */}}
{{- define "portico.baseLabels" -}}
helm.sh/chart: {{ include "portico.chart" . }}
{{ include "portico.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: portico
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels on every object of the controller component. */}}
{{- define "portico.labels" -}}
{{ include "portico.baseLabels" . }}
app.kubernetes.io/component: controller
{{- end -}}

{{/* The ServiceAccount the pods run as. */}}
{{- define "portico.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "portico.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* repository:tag, or repository@digest when a digest is given. */}}
{{- define "portico.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) -}}
{{- end -}}
{{- end -}}

{{/* The Service whose address goes into Ingress status, "namespace/name", or "". */}}
{{- define "portico.publishService" -}}
{{- if .Values.controller.publishService.enabled -}}
{{- if .Values.controller.publishService.pathOverride -}}
{{- .Values.controller.publishService.pathOverride -}}
{{- else if .Values.service.enabled -}}
{{- printf "%s/%s" .Release.Namespace (include "portico.fullname" .) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Whole seconds in a Portico duration ("500ms", "30s", "2m", "45"), rounded up, so
terminationGracePeriodSeconds can be derived from --drain-timeout.
*/}}
{{- define "portico.durationSeconds" -}}
{{- $d := . | toString | trim -}}
{{- if not (regexMatch "^[0-9]+(ms|s|m)?$" $d) -}}
{{- fail (printf "invalid duration %q: expected a whole number with ms, s or m, like 30s" $d) -}}
{{- end -}}
{{- $n := regexFind "^[0-9]+" $d | atoi -}}
{{- if hasSuffix "ms" $d -}}
{{- div (add $n 999) 1000 -}}
{{- else if hasSuffix "m" $d -}}
{{- mul $n 60 -}}
{{- else -}}
{{- $n -}}
{{- end -}}
{{- end -}}

{{/* Pods of a Deployment, for the PodDisruptionBudget: the HPA minimum or replicaCount. */}}
{{- define "portico.minReplicas" -}}
{{- if .Values.autoscaling.enabled -}}
{{- .Values.autoscaling.minReplicas -}}
{{- else -}}
{{- .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/*
The controller's flags, one list item per line. Flags set in controller.extraArgs
replace the chart's flag of the same name; a null value removes it.
*/}}
{{- define "portico.args" -}}
{{- $c := .Values.controller -}}
{{- $classes := list .Values.ingressClass.name -}}
{{- $controllers := list .Values.ingressClass.controllerValue -}}
{{- $takeOver := .Values.ingressClass.takeOver -}}
{{- if $takeOver.enabled -}}
{{- $classes = concat $classes $takeOver.classNames | uniq -}}
{{- with $takeOver.controllerValue }}{{ $controllers = append $controllers . | uniq }}{{ end -}}
{{- end -}}
{{- $flags := dict
  "ingress-class" (join "," $classes)
  "controller-name" (join "," $controllers)
  "election-id" $c.electionId
  "http-port" (toString .Values.containerPorts.http)
  "https-port" (toString .Values.containerPorts.https)
  "admin-port" (toString .Values.containerPorts.admin)
  "max-body-size" (toString $c.maxBodySize)
  "connect-timeout" (toString $c.connectTimeout)
  "upstream-timeout" (toString $c.upstreamTimeout)
  "client-header-timeout" (toString $c.clientHeaderTimeout)
  "drain-timeout" (toString $c.drainTimeout)
  "access-log" (toString $c.accessLog)
  "log-format" (toString $c.logFormat)
  "ssl-redirect" (toString $c.sslRedirect)
  "hsts" (toString $c.hsts)
-}}
{{- if .Values.service.enabled }}
{{- /* Redirects to HTTPS name the port clients reach, the Service's, not the pod's. */}}
{{- $_ := set $flags "https-redirect-port" (toString .Values.service.ports.https) }}
{{- end }}
{{- if .Values.gatewayAPI.enabled }}
{{- $_ := set $flags "gateway-controller-name" .Values.gatewayAPI.controllerName }}
{{- $_ := set $flags "gateway-service-type" .Values.gatewayAPI.serviceType }}
{{- /* The Services Portico keeps for Gateways select this release's pods. */}}
{{- $sel := list }}
{{- range $k, $v := include "portico.selectorLabels" . | fromYaml }}{{ $sel = append $sel (printf "%s=%s" $k $v) }}{{ end }}
{{- $_ := set $flags "gateway-service-selector" (join "," (sortAlpha $sel)) }}
{{- end }}
{{- with $c.watchNamespace }}{{ $_ := set $flags "watch-namespace" . }}{{ end -}}
{{- with (include "portico.publishService" .) }}{{ $_ := set $flags "publish-service" . }}{{ end -}}
{{- with $c.publishStatusAddress }}{{ $_ := set $flags "publish-status-address" (join "," .) }}{{ end -}}
{{- with $c.defaultSslCertificate }}{{ $_ := set $flags "default-ssl-certificate" . }}{{ end -}}
{{- with $c.defaultBackendService }}{{ $_ := set $flags "default-backend-service" . }}{{ end -}}
{{- with $c.configMap }}{{ $_ := set $flags "configmap" . }}{{ end -}}
{{- with $c.workerThreads }}{{ $_ := set $flags "worker-threads" (toString .) }}{{ end -}}
{{- if .Values.ingressClass.watchIngressWithoutClass }}{{ $_ := set $flags "watch-ingress-without-class" "true" }}{{ end -}}
{{- if not $c.updateStatus }}{{ $_ := set $flags "update-status" "false" }}{{ end -}}
{{- if .Values.metrics.ingressNginx.enabled }}{{ $_ := set $flags "ingress-nginx-metrics" "true" }}{{ end -}}
{{- range $k, $v := $c.extraArgs -}}
{{- if kindIs "invalid" $v }}{{ $_ := unset $flags (trimPrefix "--" $k) }}
{{- else }}{{ $_ := set $flags (trimPrefix "--" $k) (toString $v) }}{{ end -}}
{{- end -}}
{{- range $k := keys $flags | sortAlpha }}
- {{ printf "--%s=%s" $k (get $flags $k) | quote }}
{{- end -}}
{{- end -}}
