package bot

import (
	"strings"
	"testing"
	"time"
)

// The HA settings: bbolt by default; etcd needs endpoints, a prefix, a TTL of
// whole seconds, and a client certificate with its key; every refusal names
// the key and its variable.
func TestConfigStoreSettings(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	c, err := LoadConfig("", env())
	if err != nil || c.Store != StoreBbolt || c.LeaderTTL != 5*time.Second || c.EtcdPrefix != "/recoverbot/" {
		t.Fatalf("defaults: store %q ttl %s prefix %q, %v", c.Store, c.LeaderTTL, c.EtcdPrefix, err)
	}
	c, err = LoadConfig("", env("RECOVERBOT_STORE", "etcd", "RECOVERBOT_ETCD_ENDPOINTS", "https://etcd-0:2379, https://etcd-1:2379",
		"RECOVERBOT_LEADER_TTL", "10s", "RECOVERBOT_ETCD_PREFIX", "/bots/a/"))
	if err != nil || c.LeaderTTL != 10*time.Second || c.EtcdPrefix != "/bots/a/" {
		t.Fatalf("etcd: %+v, %v", c, err)
	}
	etcd := []string{"RECOVERBOT_STORE", "etcd", "RECOVERBOT_ETCD_ENDPOINTS", "http://127.0.0.1:2379"}
	for _, bad := range []struct {
		env  []string
		want string
	}{
		{[]string{"RECOVERBOT_STORE", "redis"}, `config store (RECOVERBOT_STORE): "redis" is not bbolt or etcd`},
		{[]string{"RECOVERBOT_STORE", "etcd"}, "config etcd_endpoints (RECOVERBOT_ETCD_ENDPOINTS): none given"},
		{[]string{"RECOVERBOT_STORE", "etcd", "RECOVERBOT_ETCD_ENDPOINTS", "etcd-0:2379"}, `config etcd_endpoints (RECOVERBOT_ETCD_ENDPOINTS): "etcd-0:2379" is not an etcd client URL`},
		{[]string{"RECOVERBOT_STORE", "etcd", "RECOVERBOT_ETCD_ENDPOINTS", "https://etcd-0"}, `"https://etcd-0" is not an etcd client URL`},
		{append(etcd, "RECOVERBOT_LEADER_TTL", "1500ms"), "config leader_ttl (RECOVERBOT_LEADER_TTL): 1.5s is not whole seconds within 2s..1m"},
		{append(etcd, "RECOVERBOT_LEADER_TTL", "2m"), "config leader_ttl (RECOVERBOT_LEADER_TTL): 2m0s is not whole seconds"},
		{append(etcd, "RECOVERBOT_ETCD_PREFIX", "recoverbot"), `config etcd_prefix (RECOVERBOT_ETCD_PREFIX): "recoverbot" must start and end with /`},
		{append(etcd, "RECOVERBOT_ETCD_CERT", "/tls/tls.crt"), "config etcd_cert (RECOVERBOT_ETCD_CERT): the client certificate and its key go together"},
	} {
		if _, err := LoadConfig("", env(bad.env...)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: err %v, want %q", bad.env, err, bad.want)
		}
	}
}
