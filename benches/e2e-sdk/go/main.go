// Trivial Dapr pub/sub subscriber written with the Dapr Go SDK's HTTP service
// (github.com/dapr/go-sdk/service/http): counts deliveries of bench-events and exposes
// GET /count as {"count":N,"first":t0,"last":t1} (unix seconds, float).
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/dapr/go-sdk/service/common"
	"github.com/go-chi/chi/v5"
	daprd "github.com/dapr/go-sdk/service/http"
)

var (
	mu          sync.Mutex
	count       uint64
	first, last float64
)

func now() float64 { return float64(time.Now().UnixNano()) / 1e9 }

func handler(ctx context.Context, e *common.TopicEvent) (retry bool, err error) {
	t := now()
	mu.Lock()
	if count == 0 {
		first = t
	}
	count++
	last = t
	mu.Unlock()
	return false, nil
}

func main() {
	port := os.Getenv("APP_PORT")
	mux := chi.NewRouter()
	mux.Get("/count", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		c, f, l := count, first, last
		mu.Unlock()
		w.Header().Set("content-type", "application/json")
		fmt.Fprintf(w, `{"count":%d,"first":%.6f,"last":%.6f}`, c, f, l)
	})
	s := daprd.NewServiceWithMux("127.0.0.1:"+port, mux)
	sub := &common.Subscription{PubsubName: "kafka-pubsub", Topic: "bench-events", Route: "/events/bench"}
	if err := s.AddTopicEventHandler(sub, handler); err != nil {
		log.Fatalf("subscribe: %v", err)
	}
	if err := s.Start(); err != nil && err != http.ErrServerClosed {
		log.Fatalf("serve: %v", err)
	}
}
