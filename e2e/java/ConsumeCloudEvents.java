// Reads CloudEvents from a Kafka topic with CloudEvents' own Java SDK (CloudEventDeserializer,
// which takes either mode of the Kafka binding), from the beginning, until COUNT events were read
// or 60 s passed. Prints one JSON object per event: its mode (binary when the record carried a
// ce_specversion header), id, source, type, datacontenttype, extensions and data (as text).
//
// Usage: java -cp "<kafka libs>/*:<cloudevents libs>/*" ConsumeCloudEvents.java BOOTSTRAP TOPIC COUNT
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.cloudevents.CloudEvent;
import io.cloudevents.kafka.CloudEventDeserializer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.serialization.StringDeserializer;

public class ConsumeCloudEvents {
  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", args[0]);
    p.put("group.id", "cloudevents-sdk-" + UUID.randomUUID());
    p.put("auto.offset.reset", "earliest");
    p.put("key.deserializer", StringDeserializer.class.getName());
    p.put("value.deserializer", CloudEventDeserializer.class.getName());
    int want = Integer.parseInt(args[2]);
    ObjectMapper json = new ObjectMapper();
    int n = 0;
    long deadline = System.currentTimeMillis() + 60_000;
    try (KafkaConsumer<String, CloudEvent> consumer = new KafkaConsumer<>(p)) {
      consumer.subscribe(List.of(args[1]));
      while (n < want && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, CloudEvent> r : consumer.poll(Duration.ofMillis(500))) {
          CloudEvent e = r.value();
          ObjectNode o = json.createObjectNode();
          o.put("mode", r.headers().lastHeader("ce_specversion") != null ? "binary" : "structured");
          o.put("key", r.key());
          o.put("id", e.getId());
          o.put("source", e.getSource().toString());
          o.put("type", e.getType());
          o.put("datacontenttype", e.getDataContentType());
          ObjectNode ext = o.putObject("extensions");
          for (String name : e.getExtensionNames()) ext.put(name, String.valueOf(e.getExtension(name)));
          o.put("data", e.getData() == null ? null : new String(e.getData().toBytes(), StandardCharsets.UTF_8));
          System.out.println(json.writeValueAsString(o));
          n++;
        }
      }
    }
    System.err.println("consumed " + n);
  }
}
