// Writes CloudEvents to a Kafka topic with CloudEvents' own Java SDK: its Kafka binding
// (CloudEventSerializer) in binary mode (attributes as ce_* headers, the data as the value) or
// structured mode (the whole event as JSON, content type application/cloudevents+json).
//
// Usage: java -cp "<kafka libs>/*:<cloudevents libs>/*" ProduceCloudEvents.java BOOTSTRAP TOPIC < events
// One event per line: MODE <TAB> KEY <TAB> ID <TAB> SOURCE <TAB> TYPE <TAB> DATA_JSON
// (MODE is BINARY or STRUCTURED). Each event is acknowledged by the broker before the next.
import io.cloudevents.CloudEvent;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.core.message.Encoding;
import io.cloudevents.jackson.JsonFormat;
import io.cloudevents.kafka.CloudEventSerializer;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class ProduceCloudEvents {
  static KafkaProducer<String, CloudEvent> producer(String bootstrap, Encoding encoding) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("acks", "all");
    p.put("enable.idempotence", "true");
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", CloudEventSerializer.class.getName());
    p.put(CloudEventSerializer.ENCODING_CONFIG, encoding.name());
    p.put(CloudEventSerializer.EVENT_FORMAT_CONFIG, JsonFormat.CONTENT_TYPE);
    return new KafkaProducer<>(p);
  }

  public static void main(String[] args) throws Exception {
    Map<String, KafkaProducer<String, CloudEvent>> producers = new HashMap<>();
    int n = 0;
    try (BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      String line;
      while ((line = in.readLine()) != null) {
        if (line.isEmpty()) continue;
        String[] f = line.split("\t", -1);
        Encoding encoding = Encoding.valueOf(f[0]);
        CloudEvent event =
            CloudEventBuilder.v1()
                .withId(f[2])
                .withSource(URI.create(f[3]))
                .withType(f[4])
                .withDataContentType("application/json")
                .withData(f[5].getBytes(StandardCharsets.UTF_8))
                .build();
        KafkaProducer<String, CloudEvent> producer =
            producers.computeIfAbsent(f[0], m -> producer(args[0], encoding));
        producer.send(new ProducerRecord<>(args[1], f[1], event)).get();
        n++;
      }
    } finally {
      for (KafkaProducer<String, CloudEvent> p : producers.values()) p.close();
    }
    System.out.println("produced " + n);
  }
}
