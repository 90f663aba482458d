// Package check holds no code: its tests check what ships in deploy/ and docker-compose.yml
// against the program (`make deploy-check` runs them). They build the Kubernetes manifests with
// kustomize and decode them strictly with k8s.io/api, which is why they are a module of their
// own: the product's go.mod names neither.
package check
