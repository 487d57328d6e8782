// Package deploy holds no code: it is how recoverbot is installed, and its
// tests check that what it ships works.
//
//   - kustomization.yaml and its manifests: `kubectl apply -k deploy/`
//     (README "Install in a cluster"); test/k8s/e2e applies them to a real API
//     server under Pod Security "restricted".
//   - image/: the image builder (its own module), run by `make image`;
//     image_test.go (`make test-image`) builds it twice and opens the tarball.
//   - monitoring/: an Alertmanager receiver and Prometheus alerting rules for
//     the six event types, checked by amtool and promtool (manifests_test.go).
package deploy
