{{/* The Cassandra superuser role's name and password, from the chart's Secret. */}}
{{- define "dev-backends.cqlCredentialsEnv" -}}
- name: CQL_USERNAME
  valueFrom: {secretKeyRef: {name: cassandra-credentials, key: username}}
- name: CQL_PASSWORD
  valueFrom: {secretKeyRef: {name: cassandra-credentials, key: password}}
{{- end }}

{{/* cqlsh as the Pod's own containers run it against 127.0.0.1: over TLS,
with the Pod's client certificate (made by the certs init container), when
the port takes nothing else. */}}
{{- define "dev-backends.cqlsh" -}}
{{- if and .Values.cassandra.tls.enabled (not .Values.cassandra.tls.plaintext) -}}
cqlsh --ssl --cqlshrc=/tls/cqlshrc
{{- else -}}
cqlsh
{{- end }}
{{- end }}

{{/* Cassandra's JVM_EXTRA_OPTS: cassandra.yaml's settings for passwords
and client encryption, as system properties (the cassandra image's
cassandra.yaml and our image's stay as they are). */}}
{{- define "dev-backends.cassandraJvmOpts" -}}
{{- $c := .Values.cassandra }}
{{- $opts := list "-Dcassandra.skip_wait_for_gossip_to_settle=0" }}
{{- if or $c.auth.enabled $c.tls.enabled }}
{{- $opts = append $opts "-Dcassandra.config.allow_system_properties=true" }}
{{- end }}
{{- if $c.auth.enabled }}
{{- $opts = concat $opts (list "-Dcassandra.settings.authenticator=PasswordAuthenticator" "-Dcassandra.settings.authorizer=CassandraAuthorizer" "-Dcassandra.settings.role_manager=CassandraRoleManager") }}
{{- end }}
{{- if $c.tls.enabled }}
{{- $e := "-Dcassandra.settings.client_encryption_options." }}
{{- $opts = concat $opts (list (print $e "enabled=true") (print $e "optional=" $c.tls.plaintext) (print $e "require_client_auth=" $c.tls.requireClientAuth) (print $e "ssl_context_factory.class_name=org.apache.cassandra.security.PEMBasedSslContextFactory") (print $e "keystore=/tls/node.pem") (print $e "truststore=/tls/ca.crt")) }}
{{- end }}
{{- join " " $opts }}
{{- end }}

{{/* The names the broker's TLS certificate holds, "DNS,...;IP,...": what
clients dial it by. Its external listeners are advertised at
kafka.external.host, or at the IP of the node the broker runs on, which is
only known once it is scheduled: the certificate then names every node the
cluster has at install or upgrade time. */}}
{{- define "dev-backends.kafkaBrokerNames" -}}
{{- $ns := .Release.Namespace }}
{{- $ext := .Values.kafka.external }}
{{- $dns := list (printf "kafka-0.kafka.%s.svc" $ns) (printf "kafka-0.kafka.%s.svc.cluster.local" $ns) (printf "kafka.%s.svc" $ns) (printf "kafka.%s.svc.cluster.local" $ns) "localhost" }}
{{- $ips := list "127.0.0.1" }}
{{- if $ext.host }}
{{- if regexMatch "^[0-9.]+$|:" $ext.host }}
{{- $ips = append $ips $ext.host }}
{{- else }}
{{- $dns = append $dns $ext.host }}
{{- end }}
{{- else if or $ext.sslNodePort $ext.saslSslNodePort $ext.mtlsNodePort }}
{{- range (lookup "v1" "Node" "" "").items }}
{{- range .status.addresses }}
{{- if eq .type "InternalIP" }}
{{- $ips = append $ips .address }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- printf "%s;%s" (join "," (sortAlpha (uniq $dns))) (join "," (sortAlpha (uniq $ips))) }}
{{- end }}

{{/* The broker's client listeners, a YAML list: name, port, protocol,
portName (the container's and the Services' port name), nodePort for the
ones reached from outside the cluster (advertised at the external host),
mutual for the ones that require a client certificate. An external
listener listens on its NodePort's number: a Pod that dials host:nodePort
reaches the broker at that same port after the Service's translation, which
is what a NetworkPolicy sees, so the port a runner's egress rule allows
(the advertised one) is the one its connections have. */}}
{{- define "dev-backends.kafkaListeners" -}}
{{- $ext := .Values.kafka.external }}
{{- $sasl := .Values.kafka.sasl.enabled }}
{{- $tls := .Values.kafka.tls.enabled }}
- {name: PLAINTEXT, port: 9092, protocol: PLAINTEXT, portName: broker}
{{- with $ext.nodePort }}
- {name: EXTERNAL, port: {{ . }}, protocol: PLAINTEXT, portName: external, nodePort: {{ . }}}
{{- end }}
{{- if $sasl }}
- {name: SASL, port: 9095, protocol: SASL_PLAINTEXT, portName: sasl}
{{- end }}
{{- with $ext.saslNodePort }}
- {name: EXTERNAL_SASL, port: {{ . }}, protocol: SASL_PLAINTEXT, portName: external-sasl, nodePort: {{ . }}}
{{- end }}
{{- if $tls }}
- {name: SSL, port: 9097, protocol: SSL, portName: ssl}
{{- if $sasl }}
- {name: SASL_SSL, port: 9098, protocol: SASL_SSL, portName: sasl-ssl}
{{- end }}
- {name: MTLS, port: 9099, protocol: SSL, portName: mtls, mutual: true}
{{- end }}
{{- with $ext.sslNodePort }}
- {name: EXTERNAL_SSL, port: {{ . }}, protocol: SSL, portName: external-ssl, nodePort: {{ . }}}
{{- end }}
{{- with $ext.saslSslNodePort }}
- {name: EXTERNAL_SASL_SSL, port: {{ . }}, protocol: SASL_SSL, portName: ext-sasl-ssl, nodePort: {{ . }}}
{{- end }}
{{- with $ext.mtlsNodePort }}
- {name: EXTERNAL_MTLS, port: {{ . }}, protocol: SSL, portName: external-mtls, nodePort: {{ . }}, mutual: true}
{{- end }}
{{- end }}
