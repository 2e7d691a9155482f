// kstatus reads Kubernetes objects as `kubectl get -o json` prints them (one object or a List) on
// stdin and prints, for each, the verdict of the kstatus library (sigs.k8s.io/cli-utils
// pkg/kstatus/status.Compute), the health library of Flux, kpt and Config Sync:
//
//	KIND<TAB>NAME<TAB>STATUS<TAB>MESSAGE
//
// STATUS is one of InProgress, Failed, Current, Terminating, NotFound, Unknown. Built by
// tests/tools/kstatus.sh; used by tests/integration/66-kstatus.t.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

const maxInput = 64 << 20

func main() {
	data, err := io.ReadAll(io.LimitReader(os.Stdin, maxInput+1))
	if err != nil || len(data) > maxInput {
		fmt.Fprintln(os.Stderr, "kstatus: cannot read stdin (or more than 64 MiB)")
		os.Exit(2)
	}
	// apimachinery's json keeps integers int64, as unstructured objects need them.
	var obj map[string]interface{}
	if err := json.Unmarshal(data, &obj); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: stdin is not a JSON object: %v\n", err)
		os.Exit(2)
	}
	objs := []map[string]interface{}{obj}
	if items, ok := obj["items"].([]interface{}); ok && strings.HasSuffix(fmt.Sprint(obj["kind"]), "List") {
		objs = objs[:0]
		for _, it := range items {
			if m, ok := it.(map[string]interface{}); ok {
				objs = append(objs, m)
			}
		}
	}
	rc := 0
	for _, o := range objs {
		u := &unstructured.Unstructured{Object: o}
		res, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "kstatus: %s %s: %v\n", u.GetKind(), u.GetName(), err)
			rc = 1
			continue
		}
		msg := strings.ReplaceAll(res.Message, "\n", " ")
		fmt.Printf("%s\t%s\t%s\t%s\n", u.GetKind(), u.GetName(), res.Status, msg)
	}
	os.Exit(rc)
}
