package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/recoverbot/recoverbot/internal/testutil"
)

// What the image test builds with: fixed, so the labels can be checked.
const (
	testVersion = "v9.8.7-test"
	testCommit  = "0123456789abcdef0123456789abcdef01234567"
	testEpoch   = "1700000000" // 2023-11-14T22:13:20Z
)

// TestImage builds the image twice with deploy/image/build.sh (what make image
// runs) and checks that the two tarballs are the same bytes, then opens one with
// the standard library only (not the library that wrote it): the OCI layout and
// Docker manifest agree and every blob is what its name says, the config runs a
// numeric non-root user with the binary as entrypoint and carries the version
// and commit, the one layer holds exactly the binary, the CA bundle, passwd,
// group and /data (so no shell), and the binary is static, built CGO-free with
// embedded time zone data, and says its version; then it serves as the
// Deployment configures it (serveAsDeployed); last, twice more with
// build.sh's own defaults (testDefaults).
func TestImage(t *testing.T) {
	if os.Getenv("RECOVERBOT_IMAGE_TEST") != "1" {
		t.Skip("the image test builds the bot four times (a minute or more cold): run `make test-image`")
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	fixed := []string{"VERSION=" + testVersion, "COMMIT=" + testCommit, "SOURCE_DATE_EPOCH=" + testEpoch}
	digestA, digestB := buildImage(t, a, fixed), buildImage(t, b, fixed)
	if digestA != digestB {
		t.Errorf("same commit, two digests: %s and %s", digestA, digestB)
	}
	tarA, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	tarB, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tarA, tarB) {
		t.Errorf("two builds of one commit differ: %d and %d bytes", len(tarA), len(tarB))
	}
	t.Logf("image %s, tarball %d bytes", digestA, len(tarA))

	entries := untar(t, bytes.NewReader(tarA))
	for name, e := range entries {
		if hexSum, ok := strings.CutPrefix(name, "blobs/sha256/"); ok && hexSum != "" {
			if got := sha256Hex(e.body); got != hexSum {
				t.Errorf("blob %s holds content with sha256 %s", name, got)
			}
		}
	}
	if got, want := string(entries["oci-layout"].body), `{"imageLayoutVersion":"1.0.0"}`; got != want {
		t.Errorf("oci-layout %s, want %s", got, want)
	}

	// index.json → the manifest → config and layer.
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	decode(t, entries, "index.json", &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want 1", len(index.Manifests))
	}
	m := index.Manifests[0]
	if got, want := m.Digest, digestA; got != want {
		t.Errorf("index.json's manifest %s, build.sh printed %s", got, want)
	}
	if got, want := m.Annotations["org.opencontainers.image.ref.name"], testVersion; got != want {
		t.Errorf("ref.name %q, want %q", got, want)
	}
	if got, want := m.Annotations["io.containerd.image.name"], "docker.io/library/recoverbot:"+testVersion; got != want {
		t.Errorf("io.containerd.image.name %q, want %q", got, want)
	}
	var manifest struct {
		MediaType string       `json:"mediaType"`
		Config    descriptor   `json:"config"`
		Layers    []descriptor `json:"layers"`
	}
	decode(t, entries, blob(m.Digest), &manifest)
	if manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" ||
		manifest.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
		t.Errorf("media types %q, %q: want OCI's", manifest.MediaType, manifest.Config.MediaType)
	}
	if len(manifest.Layers) != 1 || manifest.Layers[0].MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Fatalf("layers %+v, want one gzipped OCI layer", manifest.Layers)
	}

	// docker load reads manifest.json: the same config and layer.
	var docker []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	decode(t, entries, "manifest.json", &docker)
	if len(docker) != 1 || docker[0].Config != blob(manifest.Config.Digest) ||
		!slices.Equal(docker[0].Layers, []string{blob(manifest.Layers[0].Digest)}) ||
		!slices.Equal(docker[0].RepoTags, []string{"recoverbot:" + testVersion}) {
		t.Errorf("manifest.json %+v does not match the OCI manifest", docker)
	}

	var config struct {
		Architecture string `json:"architecture"`
		OS           string `json:"os"`
		Created      time.Time
		Config       struct {
			User       string
			Entrypoint []string
			Cmd        []string
			Env        []string
			Labels     map[string]string
		} `json:"config"`
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	decode(t, entries, blob(manifest.Config.Digest), &config)
	c := config.Config
	if c.User != "65532:65532" {
		t.Errorf("user %q, want the numeric non-root 65532:65532", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/recoverbot"}) || !slices.Equal(c.Cmd, []string{"serve"}) {
		t.Errorf("entrypoint %q cmd %q, want [/recoverbot] [serve]", c.Entrypoint, c.Cmd)
	}
	if !slices.Contains(c.Env, "RECOVERBOT_DATA=/data/recoverbot.db") {
		t.Errorf("env %q lacks RECOVERBOT_DATA=/data/recoverbot.db", c.Env)
	}
	wantLabels := map[string]string{
		"org.opencontainers.image.title":    "recoverbot",
		"org.opencontainers.image.version":  testVersion,
		"org.opencontainers.image.revision": testCommit,
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
	}
	for k, want := range wantLabels {
		if got := c.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if want := time.Unix(1700000000, 0); !config.Created.Equal(want) {
		t.Errorf("created %s, want the commit's time %s", config.Created, want)
	}
	if config.OS != "linux" || config.Architecture == "" {
		t.Errorf("platform %s/%s", config.OS, config.Architecture)
	}

	// The layer: exactly these entries, root's but for /data.
	gz, err := gzip.NewReader(bytes.NewReader(entries[blob(manifest.Layers[0].Digest)].body))
	if err != nil {
		t.Fatal(err)
	}
	layerTar, err := io.ReadAll(gz)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := "sha256:"+sha256Hex(layerTar), config.RootFS.DiffIDs; len(want) != 1 || got != want[0] {
		t.Errorf("layer diff id %s, config says %v", got, want)
	}
	files := untar(t, bytes.NewReader(layerTar))
	want := []string{"data/", "etc/", "etc/group", "etc/passwd", "etc/ssl/", "etc/ssl/certs/", "etc/ssl/certs/ca-certificates.crt", "recoverbot"}
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, want) {
		t.Errorf("layer holds\n%q\nwant exactly\n%q", got, want)
	}
	for name, f := range files {
		wantUID, wantMode := 0, int64(0o444)
		switch {
		case name == "data/":
			wantUID, wantMode = 65532, 0o700
		case strings.HasSuffix(name, "/"):
			wantMode = 0o755
		case name == "recoverbot":
			wantMode = 0o555
		}
		if f.hdr.Uid != wantUID || f.hdr.Gid != wantUID || f.hdr.Mode != wantMode {
			t.Errorf("%s: owner %d:%d mode %o, want %d:%d %o", name, f.hdr.Uid, f.hdr.Gid, f.hdr.Mode, wantUID, wantUID, wantMode)
		}
		if !f.hdr.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: time %s, want the commit's", name, f.hdr.ModTime)
		}
	}
	hostCerts, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(files["etc/ssl/certs/ca-certificates.crt"].body, hostCerts) {
		t.Error("the image's CA bundle is not the build machine's")
	}
	if got := string(files["etc/passwd"].body); !strings.Contains(got, "nonroot:x:65532:65532:") {
		t.Errorf("etc/passwd %q names no user 65532", got)
	}

	// The binary: static, CGO-free, with time zone data, and it says its version.
	bin := filepath.Join(dir, "recoverbot")
	if err := os.WriteFile(bin, files["recoverbot"].body, 0o555); err != nil {
		t.Fatal(err)
	}
	ef, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the binary has a %s program header: dynamically linked, but the image has no libc", p.Type)
		}
	}
	ef.Close()
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for k, want := range map[string]string{"CGO_ENABLED": "0", "-tags": "timetzdata", "-trimpath": "true", "GOOS": "linux"} {
		if got := settings[k]; got != want {
			t.Errorf("build setting %s = %q, want %q", k, got, want)
		}
	}
	cmd := exec.Command(bin, "version")
	cmd.Env = []string{} // nothing from this machine
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("recoverbot version: %v\n%s", err, out)
	}
	if want := "recoverbot " + testVersion + " (commit " + testCommit + ", go"; !strings.HasPrefix(string(out), want) {
		t.Errorf("recoverbot version said %q, want %q…", out, want)
	}

	serveAsDeployed(t, bin)

	t.Run("build.sh's defaults", testDefaults)
}

// serveAsDeployed runs the image's binary with deployment.yaml's environment
// (the Secret's two keys filled in, the runbooks of deploy/runbooks laid out
// as a ConfigMap volume, the data
// in a temporary directory; on 127.0.0.1 instead of every interface) and posts
// what Alertmanager would for every rule of monitoring/rules.yml, addressed to
// the Service's name: each alert becomes a plan of a runbook, in dry-run. An
// unauthenticated post and one addressed to another host are refused.
func serveAsDeployed(t *testing.T, bin string) {
	env, mounts := deploymentEnv(t)
	if mounts["runbooks"] != env["RECOVERBOT_RUNBOOKS"] {
		t.Fatalf("runbooks mounted at %s, read from %s", mounts["runbooks"], env["RECOVERBOT_RUNBOOKS"])
	}
	addr := testutil.FreePort(t)
	runbookDir := configMapVolume(t, "runbooks")
	env["RECOVERBOT_LISTEN"] = addr
	env["RECOVERBOT_RUNBOOKS"] = runbookDir
	env["RECOVERBOT_DATA"] = filepath.Join(t.TempDir(), "recoverbot.db")
	cmd := exec.Command(bin, "serve")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logs := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("recoverbot serve after SIGTERM: %v\n%s", err, logs)
			}
		case <-time.After(45 * time.Second): // the pod's terminationGracePeriodSeconds
			_ = cmd.Process.Kill()
			t.Errorf("recoverbot serve still running 45 s after SIGTERM\n%s", logs)
		}
	})

	// /readyz: polled, HTTP offers nothing to wait on.
	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("recoverbot serve exited: %v\n%s", err, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz not 200 within 30 s (last: %v)\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}

	type amAlert struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		Fingerprint string            `json:"fingerprint"`
	}
	alerts := firingAlerts(t)
	payload := map[string]any{"version": "4", "status": "firing", "receiver": "recoverbot", "groupKey": "{}:{}"}
	var sent []amAlert
	for i, a := range alerts {
		sent = append(sent, amAlert{Status: "firing", Labels: a.Labels, Annotations: a.Annotations,
			StartsAt: time.Unix(1700000000, 0).UTC(), Fingerprint: fmt.Sprintf("%016x", i+1)})
	}
	payload["alerts"] = sent
	body, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	post := func(host, token string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodPost, base+"/v1/alertmanager", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}
	const service = "recoverbot.recoverbot.svc:8080" // alertmanager.yml's url
	if resp, b := post(service, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d %s, want 401", resp.StatusCode, b)
	}
	if resp, b := post("evil.example:8080", testSecret["intake-token"]); resp.StatusCode != http.StatusForbidden {
		t.Errorf("another host: %d %s, want 403", resp.StatusCode, b)
	}
	resp, b := post(service, testSecret["intake-token"])
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Alertmanager's post: %d %s\n%s", resp.StatusCode, b, logs)
	}
	var answer struct {
		Results []struct {
			Fingerprint string   `json:"fingerprint"`
			PlanID      string   `json:"plan_id"`
			Decision    string   `json:"decision"`
			Reasons     []string `json:"reasons"`
			Error       string   `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &answer); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if len(answer.Results) != len(alerts) {
		t.Fatalf("%d results for %d alerts: %s", len(answer.Results), len(alerts), b)
	}
	for i, r := range answer.Results {
		if r.PlanID == "" || r.Decision != "dry_run" || r.Error != "" {
			t.Errorf("%s (%s): plan %q decision %q reasons %q error %q, want a dry-run plan",
				alerts[i].Name, alerts[i].Labels["event_type"], r.PlanID, r.Decision, r.Reasons, r.Error)
		}
	}
}

// configMapVolume lays out the files of dir as the kubelet mounts a
// ConfigMap: the files in a timestamped directory, a symlink ..data to it,
// and a symlink per file through ..data (so that an update is one rename).
func configMapVolume(t *testing.T, dir string) string {
	t.Helper()
	vol := t.TempDir()
	stamp := filepath.Join(vol, "..2026_01_02_03_04_05.000000001")
	if err := os.Mkdir(stamp, 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no files in %s: %v", dir, err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		if err := os.WriteFile(filepath.Join(stamp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(vol, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Base(stamp), filepath.Join(vol, "..data")); err != nil {
		t.Fatal(err)
	}
	return vol
}

// testDefaults (in TestImage, which make test-image runs): build.sh with
// nothing set, as make image runs it, labels
// the image with its own defaults: the revision is `git rev-parse HEAD` (with
// "-dirty" when tracked files have changes), the version `git describe
// --tags --always --dirty`, created the commit's time (%ct); and two such
// builds of one tree are the same image.
func testDefaults(t *testing.T) {
	git := func(args ...string) string {
		out, err := exec.Command("git", args...).Output()
		if err != nil {
			t.Fatalf("git %q: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	revision := git("rev-parse", "HEAD")
	if git("status", "--porcelain", "--untracked-files=no") != "" {
		revision += "-dirty"
	}
	epoch, err := strconv.ParseInt(git("log", "-1", "--format=%ct"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"org.opencontainers.image.version":  git("describe", "--tags", "--always", "--dirty"),
		"org.opencontainers.image.revision": revision,
		"org.opencontainers.image.created":  time.Unix(epoch, 0).UTC().Format(time.RFC3339),
	}

	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar")
	digestA, digestB := buildImage(t, a, nil), buildImage(t, b, nil)
	if digestA != digestB {
		t.Errorf("one tree built twice with build.sh's defaults: two digests %s and %s", digestA, digestB)
	}
	entries := untar(t, func() io.Reader {
		f, err := os.Open(a)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}())
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	decode(t, entries, "index.json", &index)
	if len(index.Manifests) != 1 {
		t.Fatalf("index.json lists %d manifests, want 1", len(index.Manifests))
	}
	var manifest struct {
		Config descriptor `json:"config"`
	}
	decode(t, entries, blob(index.Manifests[0].Digest), &manifest)
	var config struct {
		Config struct{ Labels map[string]string } `json:"config"`
	}
	decode(t, entries, blob(manifest.Config.Digest), &config)
	for k, w := range want {
		if got := config.Config.Labels[k]; got != w {
			t.Errorf("label %s = %q, want %q (build.sh's default)", k, got, w)
		}
	}
}

// buildImage runs deploy/image/build.sh with env (KEY=value) over this
// process's environment, less any VERSION, COMMIT or SOURCE_DATE_EPOCH of its
// own (so that nil means build.sh's defaults), and returns the digest it printed.
func buildImage(t *testing.T, out string, env []string) string {
	t.Helper()
	cmd := exec.Command("image/build.sh", out)
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "VERSION", "COMMIT", "SOURCE_DATE_EPOCH":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("build.sh: %v\n%s", err, stderr.Bytes())
	}
	t.Logf("build.sh %s: %s", filepath.Base(out), time.Since(start).Round(100*time.Millisecond))
	return strings.TrimSpace(string(stdout))
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Annotations map[string]string `json:"annotations"`
}

type entry struct {
	hdr  *tar.Header
	body []byte
}

func untar(t *testing.T, r io.Reader) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	tr := tar.NewReader(r)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := out[h.Name]; dup {
			t.Errorf("%s twice in one tar", h.Name)
		}
		out[h.Name] = entry{hdr: h, body: body}
		names = append(names, h.Name)
	}
	if !slices.IsSorted(names) {
		t.Errorf("tar entries not sorted: %q", names)
	}
	return out
}

func decode(t *testing.T, entries map[string]entry, name string, v any) {
	t.Helper()
	e, ok := entries[name]
	if !ok {
		t.Fatalf("%s missing", name)
	}
	if err := json.Unmarshal(e.body, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

func blob(digest string) string { return "blobs/sha256/" + strings.TrimPrefix(digest, "sha256:") }

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
