// Trivial Dapr pub/sub subscriber on the Dapr Go SDK's streaming subscription
// (client.SubscribeWithHandler, daprd's SubscribeTopicEventsAlpha1 over gRPC): counts deliveries
// of bench-events and exposes GET /count as {"count":N,"first":t0,"last":t1} (unix seconds).
// It subscribes with rawPayload, as event-runtime's stream does, so daprd does the same work.
package main

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"eventruntime.bench/e2e-sdk-go/counter"
	dapr "github.com/dapr/go-sdk/client"
	"github.com/dapr/go-sdk/service/common"
)

var deliveries counter.Counter

func handler(e *common.TopicEvent) common.SubscriptionResponseStatus {
	deliveries.Add(1)
	return common.SubscriptionResponseStatusSuccess
}

func main() {
	http.Handle("GET /count", &deliveries)
	go func() {
		// daprd starts after the app: dial until it answers.
		addr := "127.0.0.1:" + os.Getenv("DAPR_GRPC_PORT")
		for {
			client, err := dapr.NewClientWithAddress(addr)
			if err == nil {
				opts := dapr.SubscriptionOptions{
					PubsubName: "kafka-pubsub",
					Topic:      "bench-events",
					Metadata:   map[string]string{"rawPayload": "true"},
				}
				if _, err = client.SubscribeWithHandler(context.Background(), opts, handler); err == nil {
					return
				}
				client.Close()
			}
			log.Printf("subscribe: %v (again)", err)
			time.Sleep(250 * time.Millisecond)
		}
	}()
	log.Fatal(http.ListenAndServe("127.0.0.1:"+os.Getenv("APP_PORT"), nil))
}
