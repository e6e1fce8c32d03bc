{{/* Labels on every object the chart itself owns. */}}
{{- define "trellis.labels" -}}
app.kubernetes.io/name: trellis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The IstioOperator overlay the values select; the installer validates every key. */}}
{{- define "trellis.overlay" -}}
{{- $v := .Values -}}
{{- $ingress := list (dict "name" "istio-ingressgateway" "enabled" $v.ingressGateways.enabled) -}}
{{- $egress := list (dict "name" "istio-egressgateway" "enabled" $v.egressGateways.enabled) -}}
{{- $global := dict "hub" $v.global.hub "tag" $v.global.tag "imagePullPolicy" $v.global.imagePullPolicy "istioNamespace" .Release.Namespace -}}
{{- $values := dict "global" $global "console" $v.console "tracing" $v.tracing -}}
{{- $spec := dict "profile" $v.profile "components" (dict "ingressGateways" $ingress "egressGateways" $egress) "values" $values -}}
{{- dict "apiVersion" "install.istio.io/v1alpha1" "kind" "IstioOperator" "metadata" (dict "name" .Release.Name) "spec" $spec | toYaml -}}
{{- end -}}

{{/* The installer image: HUB/NAME:TAG, or the value itself when it names a registry path. */}}
{{- define "trellis.installerImage" -}}
{{- if contains "/" .Values.installer.image -}}
{{ .Values.installer.image }}
{{- else -}}
{{ printf "%s/%s:%s" .Values.global.hub .Values.installer.image (toString .Values.global.tag) }}
{{- end -}}
{{- end -}}

{{/* A Job running the trellis CLI with the overlay ConfigMap mounted at /overlay. */}}
{{- define "trellis.installerJob" -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "trellis.labels" .root | nindent 4 }}
  annotations:
    helm.sh/hook: {{ .hook }}
    # Failed Jobs stay until the next release so their log can be read.
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: 0
  template:
    metadata:
      labels:
        app: {{ .name }}
      annotations:
        sidecar.istio.io/inject: "false"
    spec:
      serviceAccountName: trellis-installer
      restartPolicy: Never
      containers:
      - name: trellis
        image: {{ include "trellis.installerImage" .root }}
        imagePullPolicy: {{ .root.Values.global.imagePullPolicy }}
        command: ["trellis"]
        args:
          {{- toYaml .args | nindent 10 }}
        volumeMounts:
        - name: overlay
          mountPath: /overlay
          readOnly: true
      volumes:
      - name: overlay
        configMap:
          name: trellis-installer-overlay
{{- end -}}
