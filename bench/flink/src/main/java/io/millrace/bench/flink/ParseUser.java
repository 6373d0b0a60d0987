package io.millrace.bench.flink;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Instant;
import java.util.StringJoiner;
import org.apache.flink.api.common.functions.MapFunction;

/**
 * A randomuser.me record (JSON text) to the table's columns, the mapping of
 * examples/randomuser.yaml and of bench/seed-spark/spark_stream.py. A record
 * that is not JSON fails the job, as an unguarded Flink map does.
 */
public class ParseUser implements MapFunction<String, UserRow> {
    private static final long serialVersionUID = 1L;
    // Thread-safe once configured; one per JVM.
    private static final ObjectMapper JSON = new ObjectMapper();

    @Override
    public UserRow map(String value) throws Exception {
        JsonNode u = JSON.readTree(value);
        JsonNode location = u.path("location");
        UserRow row = new UserRow();
        row.id = text(u.at("/login/uuid"));
        row.firstName = text(u.at("/name/first"));
        row.lastName = text(u.at("/name/last"));
        row.gender = text(u.path("gender"));
        // "{number} {name}, {city}, {state}, {country}"; a missing part is
        // left out with its separator, as Spark's concat_ws does.
        row.address = join(", ",
                join(" ", text(location.at("/street/number")), text(location.at("/street/name"))),
                join(", ", text(location.path("city")), text(location.path("state")),
                        text(location.path("country"))));
        // A number for some countries, text for others: stored as text.
        row.postCode = text(location.path("postcode"));
        row.email = text(u.path("email"));
        row.username = text(u.at("/login/username"));
        String registered = text(u.at("/registered/date"));
        row.registeredDate = registered == null ? null : Instant.parse(registered);
        row.phone = text(u.path("phone"));
        row.picture = text(u.at("/picture/medium"));
        return row;
    }

    private static String text(JsonNode node) {
        return node == null || node.isMissingNode() || node.isNull() ? null : node.asText();
    }

    private static String join(String separator, String... parts) {
        StringJoiner joined = new StringJoiner(separator);
        for (String part : parts) {
            if (part != null) {
                joined.add(part);
            }
        }
        return joined.toString();
    }
}
