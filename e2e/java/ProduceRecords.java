// Writes records to a Kafka topic with Kafka's own Java producer, byte for byte: what any service
// with a plain Kafka client can put on a topic the app subscribes to.
//
// Usage: java -cp "<kafka libs>/*" ProduceRecords.java BOOTSTRAP TOPIC < records
// One record per line: KEY_BASE64 <TAB> VALUE_BASE64 [<TAB> HEADER_NAME=VALUE_BASE64]...
// (an empty KEY_BASE64 means no key). Each record is acknowledged by the broker before the next.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class ProduceRecords {
  public static void main(String[] args) throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", args[0]);
    p.put("acks", "all");
    p.put("enable.idempotence", "true");
    p.put("key.serializer", ByteArraySerializer.class.getName());
    p.put("value.serializer", ByteArraySerializer.class.getName());
    Base64.Decoder b64 = Base64.getDecoder();
    int n = 0;
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p);
        BufferedReader in =
            new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      String line;
      while ((line = in.readLine()) != null) {
        if (line.isEmpty()) continue;
        String[] f = line.split("\t", -1);
        byte[] key = f[0].isEmpty() ? null : b64.decode(f[0]);
        ProducerRecord<byte[], byte[]> r = new ProducerRecord<>(args[1], key, b64.decode(f[1]));
        for (int i = 2; i < f.length; i++) {
          int eq = f[i].indexOf('=');
          r.headers().add(f[i].substring(0, eq), b64.decode(f[i].substring(eq + 1)));
        }
        producer.send(r).get();
        n++;
      }
    }
    System.out.println("produced " + n);
  }
}
