// Command image writes recoverbot's container image as a tarball, without a
// Docker daemon and without pulling a base image: one layer holding the static
// binary, the build machine's CA bundle, /etc/passwd and /etc/group naming the
// non-root user, and an empty /data. Nothing else: no shell, no package manager,
// no libc (the binary is built with CGO_ENABLED=0 and embeds its time zone data).
//
// The tarball is an OCI image layout (oci-layout, index.json, blobs/sha256/…)
// that also carries Docker's manifest.json, as `docker save` writes since
// Docker 25: `docker load`, `podman load`, `ctr images import` and `kind load
// image-archive` all take it.
//
// The same inputs give the same bytes, so the same commit gives the same digest:
// every timestamp is -created (make image passes the commit's time), tar entries
// are written sorted with owner and mode fixed, and gzip output is deterministic.
// It prints the image's manifest digest.
//
// Usage (make image runs it; see deploy/image/build.sh):
//
//	go run . -binary bin/image/recoverbot -version v1.2.3 -commit SHA -created EPOCH -out bin/recoverbot-image.tar
package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's fixed facts. The user is numeric so that Kubernetes can check
// runAsNonRoot without a passwd lookup; 65532 is distroless's "nonroot".
const (
	uid        = 65532
	entrypoint = "/recoverbot"
	dataDir    = "/data"
	listenPort = "8080/tcp"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := options{}
	fs.StringVar(&o.binary, "binary", "", "the recoverbot binary (linux, static)")
	fs.StringVar(&o.caCerts, "ca-certs", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to install as /etc/ssl/certs/ca-certificates.crt")
	fs.StringVar(&o.version, "version", "", "version: the label org.opencontainers.image.version and the tag")
	fs.StringVar(&o.commit, "commit", "", "commit: the label org.opencontainers.image.revision")
	fs.Int64Var(&o.created, "created", -1, "Unix time of every timestamp in the image (the commit's time)")
	fs.StringVar(&o.name, "name", "recoverbot", "image name the tarball tags it with (name:version)")
	fs.StringVar(&o.source, "source", "", "the label org.opencontainers.image.source (a URL; optional)")
	fs.StringVar(&o.arch, "arch", "amd64", "the binary's GOARCH")
	fs.StringVar(&o.out, "out", "", "the tarball to write")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	digest, err := build(o)
	if err != nil {
		fmt.Fprintln(stderr, "image:", err)
		return 1
	}
	fmt.Fprintln(stdout, digest)
	return 0
}

type options struct {
	binary, caCerts, version, commit, name, source, arch, out string
	created                                                   int64
}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

func (o options) validate() error {
	var errs []error
	for flag, v := range map[string]string{"-binary": o.binary, "-version": o.version, "-commit": o.commit, "-out": o.out, "-name": o.name} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", flag))
		}
	}
	if o.version != "" && !tagRE.MatchString(o.version) {
		errs = append(errs, fmt.Errorf("-version %q is not a valid image tag (letters, digits, _ . -; up to 128)", o.version))
	}
	if o.created < 0 {
		errs = append(errs, errors.New("-created (Unix time, e.g. git log -1 --format=%ct) is required: it makes the digest reproducible"))
	}
	return errors.Join(errs...)
}

// build writes the tarball and returns the manifest digest.
func build(o options) (v1.Hash, error) {
	if err := o.validate(); err != nil {
		return v1.Hash{}, err
	}
	created := time.Unix(o.created, 0).UTC()
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return v1.Hash{}, err
	}
	certs, err := os.ReadFile(o.caCerts)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("CA certificates (install Debian's ca-certificates): %w", err)
	}
	layerTar, err := rootfs(created, []file{
		{name: "data/", mode: 0o700, uid: uid},
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o444, body: fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", uid)},
		{name: "etc/passwd", mode: 0o444, body: fmt.Appendf(nil,
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", uid, uid)},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o444, body: certs},
		{name: strings.TrimPrefix(entrypoint, "/"), mode: 0o555, body: bin},
	})
	if err != nil {
		return v1.Hash{}, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return v1.Hash{}, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "deploy/image: recoverbot, CA certificates, /etc/passwd, /data"}})
	if err != nil {
		return v1.Hash{}, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = o.arch, "linux"
	cf.Created = v1.Time{Time: created}
	labels := map[string]string{
		"org.opencontainers.image.title":    "recoverbot",
		"org.opencontainers.image.version":  o.version,
		"org.opencontainers.image.revision": o.commit,
		"org.opencontainers.image.created":  created.Format(time.RFC3339),
	}
	if o.source != "" {
		labels["org.opencontainers.image.source"] = o.source
	}
	cf.Config = v1.Config{
		User:         fmt.Sprintf("%d:%d", uid, uid),
		Entrypoint:   []string{entrypoint},
		Cmd:          []string{"serve"},
		WorkingDir:   "/",
		Env:          []string{"RECOVERBOT_DATA=" + dataDir + "/recoverbot.db"},
		ExposedPorts: map[string]struct{}{listenPort: {}},
		Labels:       labels,
		StopSignal:   "SIGTERM",
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return v1.Hash{}, err
	}
	return writeArchive(o.out, img, o.name+":"+o.version)
}

// file is one entry of the image's single layer.
type file struct {
	name string // relative; directories end in "/"
	mode int64
	uid  int
	body []byte
}

// rootfs is the layer's tar: entries sorted by name, owned by root unless
// said otherwise, every time created.
func rootfs(created time.Time, files []file) ([]byte, error) {
	slices.SortFunc(files, func(a, b file) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.uid, ModTime: created, Format: tar.FormatPAX}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeArchive writes img as an OCI image layout in a tar, plus Docker's
// manifest.json, entries sorted, every time the Unix epoch (the blobs are
// content-addressed; the image's own times are in its config). It writes to a
// temporary file and renames it, so a failed build leaves no half tarball.
func writeArchive(out string, img v1.Image, ref string) (v1.Hash, error) {
	manifest, err := img.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	digest, err := img.Digest()
	if err != nil {
		return v1.Hash{}, err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return v1.Hash{}, err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return v1.Hash{}, err
	}
	entries := map[string][]byte{
		"oci-layout":         []byte(`{"imageLayoutVersion":"1.0.0"}`),
		blobPath(digest):     manifest,
		blobPath(configName): config,
		"blobs/":             nil,
		"blobs/sha256/":      nil,
	}
	layers, err := img.Layers()
	if err != nil {
		return v1.Hash{}, err
	}
	var layerPaths []string
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return v1.Hash{}, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return v1.Hash{}, err
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return v1.Hash{}, err
		}
		entries[blobPath(d)] = b
		layerPaths = append(layerPaths, blobPath(d))
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	index := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: types.OCIManifestSchema1, Digest: digest, Size: int64(len(manifest)),
			Annotations: map[string]string{
				"org.opencontainers.image.ref.name": tag,
				"io.containerd.image.name":          fullName(ref),
			},
		}},
	}
	if entries["index.json"], err = json.Marshal(index); err != nil {
		return v1.Hash{}, err
	}
	dockerManifest := []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blobPath(configName), RepoTags: []string{ref}, Layers: layerPaths}}
	if entries["manifest.json"], err = json.Marshal(dockerManifest); err != nil {
		return v1.Hash{}, err
	}

	tmp, err := os.CreateTemp(filepath.Dir(out), ".recoverbot-image-*")
	if err != nil {
		return v1.Hash{}, err
	}
	defer os.Remove(tmp.Name()) // after the rename: a no-op
	tw := tar.NewWriter(tmp)
	for _, name := range slices.Sorted(maps.Keys(entries)) {
		body := entries[name]
		h := &tar.Header{Name: name, Mode: 0o444, ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg, Size: int64(len(body)), Format: tar.FormatPAX}
		if strings.HasSuffix(name, "/") {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			tmp.Close()
			return v1.Hash{}, err
		}
		if _, err := tw.Write(body); err != nil {
			tmp.Close()
			return v1.Hash{}, err
		}
	}
	if err := errors.Join(tw.Close(), tmp.Sync(), tmp.Close()); err != nil {
		return v1.Hash{}, err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return v1.Hash{}, err
	}
	return digest, os.Rename(tmp.Name(), out)
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// fullName is ref as containerd names images: a name without a registry is
// Docker Hub's library/ (what docker and nerdctl would call it).
func fullName(ref string) string {
	name := ref[:strings.LastIndex(ref, ":")]
	first, _, hasSlash := strings.Cut(name, "/")
	switch {
	case !hasSlash:
		return "docker.io/library/" + ref
	case !strings.ContainsAny(first, ".:") && first != "localhost":
		return "docker.io/" + ref
	}
	return ref
}
