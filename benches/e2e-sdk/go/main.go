// Trivial Dapr pub/sub subscriber written with the Dapr Go SDK's HTTP service
// (github.com/dapr/go-sdk/service/http): counts deliveries of bench-events and exposes
// GET /count as {"count":N,"first":t0,"last":t1} (unix seconds, float).
package main

import (
	"context"
	"log"
	"net/http"
	"os"

	"eventruntime.bench/e2e-sdk-go/counter"
	"github.com/dapr/go-sdk/service/common"
	daprd "github.com/dapr/go-sdk/service/http"
	"github.com/go-chi/chi/v5"
)

var deliveries counter.Counter

func handler(ctx context.Context, e *common.TopicEvent) (retry bool, err error) {
	deliveries.Add(1)
	return false, nil
}

func main() {
	port := os.Getenv("APP_PORT")
	mux := chi.NewRouter()
	mux.Method("GET", "/count", &deliveries)
	s := daprd.NewServiceWithMux("127.0.0.1:"+port, mux)
	sub := &common.Subscription{PubsubName: "kafka-pubsub", Topic: "bench-events", Route: "/events/bench"}
	if err := s.AddTopicEventHandler(sub, handler); err != nil {
		log.Fatalf("subscribe: %v", err)
	}
	if err := s.Start(); err != nil && err != http.ErrServerClosed {
		log.Fatalf("serve: %v", err)
	}
}
