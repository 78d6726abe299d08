// A Dapr bulk subscriber in Go without the SDK (net/http only): the Go SDK v1.11.0, the newest
// the module proxy offers, has no bulk subscriber (its HTTP service has none, and its gRPC
// OnBulkTopicEventAlpha1 panics "This API callback is not supported."). Subscribes to
// bench-events in bulk (100 messages, 100 ms), answers SUCCESS for every entry, counts them, and
// exposes GET /count as {"count":N,"first":t0,"last":t1}.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"

	"eventruntime.bench/e2e-sdk-go/counter"
)

var deliveries counter.Counter

type entry struct {
	EntryID string `json:"entryId"`
}

type status struct {
	EntryID string `json:"entryId"`
	Status  string `json:"status"`
}

func main() {
	port := os.Getenv("APP_PORT")
	mux := http.NewServeMux()
	mux.Handle("GET /count", &deliveries)
	mux.HandleFunc("GET /dapr/subscribe", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		fmt.Fprint(w, `[{"pubsubname":"kafka-pubsub","topic":"bench-events","route":"/events/bench",`+
			`"bulkSubscribe":{"enabled":true,"maxMessagesCount":100,"maxAwaitDurationMs":100}}]`)
	})
	mux.HandleFunc("POST /events/bench", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Entries []entry `json:"entries"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		statuses := make([]status, len(req.Entries))
		for i, e := range req.Entries {
			statuses[i] = status{EntryID: e.EntryID, Status: "SUCCESS"}
		}
		deliveries.Add(uint64(len(req.Entries)))
		w.Header().Set("content-type", "application/json")
		json.NewEncoder(w).Encode(map[string][]status{"statuses": statuses})
	})
	if err := http.ListenAndServe("127.0.0.1:"+port, mux); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
