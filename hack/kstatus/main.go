// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus, the library Flux's
// health checks, Helm 4's --wait and kpt use) concludes of each object of a Kubernetes List
// read as JSON on stdin (`kubectl get ... -o json`): one line per object,
// "<kind>/<name> <status> <message>". The tests compare the operator's status with it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: reading stdin:", err)
		os.Exit(2)
	}
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON(data); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus: not a List:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for i := range list.Items {
		item := &list.Items[i]
		result, err := status.Compute(item)
		if err != nil {
			fmt.Fprintf(out, "%s/%s Error %v\n", item.GetKind(), item.GetName(), err)
			continue
		}
		fmt.Fprintf(out, "%s/%s %s %s\n", item.GetKind(), item.GetName(), result.Status, result.Message)
	}
}
