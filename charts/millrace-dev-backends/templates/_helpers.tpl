{{/* The Cassandra superuser role's name and password, from the chart's Secret. */}}
{{- define "dev-backends.cqlCredentialsEnv" -}}
- name: CQL_USERNAME
  valueFrom: {secretKeyRef: {name: cassandra-credentials, key: username}}
- name: CQL_PASSWORD
  valueFrom: {secretKeyRef: {name: cassandra-credentials, key: password}}
{{- end }}
