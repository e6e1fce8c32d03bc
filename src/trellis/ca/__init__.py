"""The mesh certificate authority (Istio's istiod CA): roots, workload certs, SDS, join tokens.

authority (pure CA), chain (plug-in checks), profiles (X.509 shapes), keys, identity (SPIFFE IDs,
join tokens), rotation (half-life timing), sds (Envoy Secret protos), store (the only disk I/O).
See docs/ca.md.
"""
